"""The kinds of input file the backend reads, by suffix: one list each, for the readers, the job
declarations and the server's upload checks alike."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# What the video reader decodes (OpenCV's FFmpeg build; GIF through Pillow).
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif", ".mpg", ".mpeg")
# A zip of frames (the server and the CLI extract it into a frame folder: video/frame_folder.py).
FRAME_ARCHIVE_SUFFIXES = (".zip",)
PLY_SUFFIXES = (".ply",)
KEYPOINTS_SUFFIXES = (".json",)
