"""The local job server (``dynapose4d serve``): an HTTP API on loopback that runs jobs in worker
processes and streams their progress and per-frame Gaussians while they train.

Modules, one job each:

- ``cli``: the ``serve`` command (binds 127.0.0.1, takes the jobs-folder lock, writes the
  address file, runs uvicorn)
- ``address``: the address file (URL + token, mode 0600) a client reads to find the server
- ``instance``: one server per jobs folder (an OS file lock, taken over from a dead holder)
- ``auth``: bearer token (constant-time) + Host-header check (DNS-rebinding guard), as middleware
- ``slowclients``: header and body timeouts for clients that stall
- ``errors``: exceptions to JSON answers (4xx, 507 disk full, 500 with a request id)
- ``app``: the ``/v1`` routes; ``schemas``: their response bodies
- ``uploads``: multipart uploads parsed while streaming, with limits, and per-file checks
- ``store``: job folders on disk and the server's record of each job
- ``diskspace``: recognising and reporting a full disk; removing half-written files
- ``jobs``: queue, job creation (staging, then commit), worker processes,
  cancel/resume/delete, recovery and automatic resume after a restart
- ``executors``: where workers run, behind one interface: child processes (the default), or
  Ray actors on a cluster (``ray_executor``, ``--executor ray``; Ray is imported only then)
- ``worker``: the worker program (``python -m dynapose4d.server.runner.worker JOB_DIR``)
- ``eventlog``: a job's ``events.jsonl`` read incrementally, and the progress it adds up to
- ``frames``: frames and keypoint tracks sampled from the latest snapshot model
- ``wire``: the binary frame format (spec: ``docs/wire-format.md``; decoder:
  ``blender_addon/format/wire.py``)
- ``results``: the result zip; ``probe``: device/GPU/model information (in a subprocess, cached)

API (all under ``/v1``, all need ``Authorization: Bearer <token>``)::

    GET    /health                      version, device, GPU, models, job counts
    GET    /kinds                       job kinds: settings (types, ranges) and input files
    GET    /openapi.json                this API's OpenAPI spec
    GET    /jobs                        every job's status
    POST   /jobs                        create: multipart kind + settings (JSON) + input files
    GET    /jobs/{id}                   status: state, stage, progress, losses, ETA, snapshot
    DELETE /jobs/{id}                   delete (stops it first)
    POST   /jobs/{id}/cancel            stop within ~2 s, keeping the last checkpoint
    POST   /jobs/{id}/resume            continue a failed/cancelled/interrupted job
    GET    /jobs/{id}/events            server-sent events (status, progress, snapshot, ...)
    GET    /jobs/{id}/log               the worker's output
    GET    /jobs/{id}/frames/{index}    one frame of the latest snapshot (wire format)
    GET    /jobs/{id}/keypoints         keypoint trajectories + skeleton (JSON)
    GET    /jobs/{id}/result            PLY sequence + sidecar as a zip

Security by default: the server listens on 127.0.0.1 only (another address needs
``--allow-remote``); the token is random per start and is read from the address file (mode
0600), never from a URL; requests with a Host header other than 127.0.0.1, localhost or [::1]
with the bound port are refused (DNS rebinding); uploads are limited while they stream in, and
images are checked against a pixel limit before decoding; job files are private to the user. For a GPU on another machine, keep the
server on its loopback and use an SSH tunnel with the same port on both ends
(``ssh -N -L 8765:127.0.0.1:8765 gpu-box``, server started with ``--port 8765``), so the token
never crosses the network in clear text.

Registering ``serve`` on the command line imports only the light modules (``cli``, ``address``,
``auth``, ``config``); FastAPI and uvicorn load when the server starts, torch in the background
once it is ready.
"""
