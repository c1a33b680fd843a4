"""The compress settings named in several places come from one torch-free module: the CLI's choices
and defaults, CompressConfig's defaults and the resume record's ABSENT values all equal it."""

from __future__ import annotations

import dataclasses
import inspect

from slimsam_edge.compress import choices


def test_the_cli_offers_the_choices_and_defaults_of_the_one_module():
    from slimsam_edge.cli import compress as cli

    assert [e.value for e in cli.DecoderTrains] == list(choices.DECODER_TRAINS)
    assert [e.value for e in cli.DecoderPrompts] == list(choices.DECODER_PROMPTS)
    assert [e.value for e in cli.EmbeddingTarget] == list(choices.EMBEDDING_TARGETS)
    params = inspect.signature(cli.compress).parameters
    for name, default in choices.LATER_DEFAULTS.items():
        got = params[name].default
        assert getattr(got, "value", got) == default, name


def test_the_job_config_and_its_record_share_those_defaults():
    from slimsam_edge.compress.cache import EMBEDDING_TARGETS
    from slimsam_edge.compress.decoder_tune import DECODER_PROMPTS
    from slimsam_edge.compress.distill import DECODER_TRAINS
    from slimsam_edge.compress.pipeline import ABSENT, CompressConfig

    fields = {f.name: f.default for f in dataclasses.fields(CompressConfig)}
    assert {k: fields[k] for k in choices.LATER_DEFAULTS} == choices.LATER_DEFAULTS == ABSENT
    assert (EMBEDDING_TARGETS, DECODER_PROMPTS, DECODER_TRAINS) == (
        choices.EMBEDDING_TARGETS, choices.DECODER_PROMPTS, choices.DECODER_TRAINS)
    assert CompressConfig(0.5).identity().keys().isdisjoint(choices.LATER_DEFAULTS)  # defaults: not recorded
