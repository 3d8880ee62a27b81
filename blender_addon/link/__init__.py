"""The add-on's link to the backend, with no bpy: the HTTP client, the job follower, the local
backend's process and environment, and what a job asks for. Tested with plain pytest."""
