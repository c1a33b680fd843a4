"""The names and defaults of ``compress`` settings that several places spell: the CLI's options,
:class:`~slimsam_edge.compress.pipeline.CompressConfig`, a job's resume record
(:data:`~slimsam_edge.compress.pipeline.ABSENT`) and ``scripts/speed.py``. One place, torch-free, so
``slimsam-edge compress --help`` can read it without importing torch.

Example:
    >>> list(DECODER_TRAINS), DECODER_PROMPTS, list(EMBEDDING_TARGETS)
    (['decoder', 'encoder+decoder'], ('random', 'random+interior'), ['teacher', 'regridded'])
    >>> LATER_DEFAULTS["decoder_steps"], LATER_DEFAULTS["embedding_target"]
    (0, 'teacher')
"""

from __future__ import annotations

#: ``compress --embedding-target``: what the encoder phases pull a smaller-input student's embedding toward
#: (both are the same at the teacher's input size)
EMBEDDING_TARGETS = {
    "teacher": "the teacher's embedding at the teacher's input size, resized (bilinear) to the student's grid",
    "regridded": "the embedding of the unpruned model moved to the student's input size (position tables "
                 "interpolated), the grid the student's mask decoder reads",
}

#: ``compress --decoder-trains``: what the decoder phase's mask loss trains: the mask decoder alone, or it
#: and the image encoder (the encoder then learns from the teacher's masks through the decoder)
DECODER_TRAINS = {"decoder": ("mask_decoder",), "encoder+decoder": ("image_encoder", "mask_decoder")}

#: ``compress --decoder-prompts``: the decoder phase's prompt sets: random points and the boxes around the
#: teacher's masks for them; ``random+interior`` adds the interior points of those masks
DECODER_PROMPTS = ("random", "random+interior")

#: defaults of the settings added after the first jobs were recorded: CompressConfig's and the CLI's,
#: and left out of a job's record while they have these values (older checkpoints resume, older
#: reports are reused)
LATER_DEFAULTS = {"image_size": None, "decoder_steps": 0, "decoder_lr": 1e-4, "decoder_trains": "decoder",
                  "decoder_prompts": "random", "embedding_target": "teacher"}
