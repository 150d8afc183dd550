"""Blocks and cells shared by kerastp models, one public class per file."""

from kerastp.layers.stl_mixer import STLMixerBlock

__all__ = ["STLMixerBlock"]
