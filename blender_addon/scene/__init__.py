"""The add-on's Blender side: numpy arrays in, Blender data out. Imports bpy."""
