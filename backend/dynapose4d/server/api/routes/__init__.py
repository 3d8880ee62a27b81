"""The HTTP API's routes, one router per resource; :mod:`..app` composes them under ``/v1``.

    health      GET /health, GET /kinds: the service, its device and the job kinds
    jobs        /jobs, /jobs/{id} and its cancel and resume: a job's life cycle
    events      /jobs/{id}/log and /jobs/{id}/events: what a job's worker says
    frames      /jobs/{id}/frames/{index}, /mesh, /keypoints (the latest snapshot) and /result
    candidates  /jobs/{id}/candidates...: a generate job's driving-video candidates
    models      /models, /models/{name}/download and its cancel: the model weights on the backend's machine

Each router is made by a function that takes what its routes use (the job manager, the config,
the frame cache); none holds state of its own.
"""
