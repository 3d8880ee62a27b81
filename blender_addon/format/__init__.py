"""The add-on's format side: no ``bpy`` import, so plain pytest covers it."""
