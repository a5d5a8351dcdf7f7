"""The pack's ComfyUI nodes (V3 schema) and its host layer (``host/``).

Importing this package imports nothing: ``extension.py`` lists the nodes for ComfyUI, and the
trainer imports ``host`` alone. Node ids are the workflow contract: never rename them.
"""
