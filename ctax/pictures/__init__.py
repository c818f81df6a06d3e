"""Pictures people look at: the model card's and an evaluation's figures (matplotlib, drawn once and kept as PNG
artefacts) and the 2-D map of the active version's space (computed by the process that owns the index, kept as
JSON). The API only serves what this package wrote; it never imports it (matplotlib, UMAP and the index stay out
of the API process)."""
