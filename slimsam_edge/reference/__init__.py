"""The project's own reference model ("sam-mini"): training recipe, losses and prompt sampling.

No SAM weights can be downloaded where this project is built, so it trains a small
SAM-architecture model on procedural data (:mod:`slimsam_edge.data.procedural`) and ships it in
``slimsam_edge/assets/``. :mod:`.prompts` is torch-free (evaluation reuses it); :mod:`.losses`
and :mod:`.train` need torch and are imported on demand.

Example:
    >>> from slimsam_edge.reference.recipe import Recipe
    >>> Recipe().focal_weight, Recipe().dice_weight
    (20.0, 1.0)
"""
