"""The project's own reference model ("sam-mini"): training recipe, losses and prompt sampling.

No SAM weights can be downloaded where this project is built, so it trains a small
SAM-architecture model on procedural data (:mod:`slimsam_edge.data.procedural`) and ships it in
``slimsam_edge/assets/``. :mod:`.recipe` is torch-free; :mod:`.train` needs torch and is imported
on demand. Prompt sampling (:mod:`slimsam_edge.data.prompts`), the losses and the batched forward
pass (:mod:`slimsam_edge.models.batch`) are shared with compression and live below both.

Example:
    >>> from slimsam_edge.reference.recipe import Recipe
    >>> Recipe().focal_weight, Recipe().dice_weight
    (20.0, 1.0)
"""
