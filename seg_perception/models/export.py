"""Torch model -> ONNX file (opset 17, normalisation inside the graph) + sidecar."""

from __future__ import annotations

from pathlib import Path
import warnings

import torch
from torch import nn

from seg_perception.core.artifact import ModelArtifact, Normalization, write_sidecar
from seg_perception.models.normalized import Normalized

ONNX_OPSET = 17  # TensorRT 8.5 / 8.6 (JetPack 5, 6.0) read at most opset 17


def export_onnx(model: nn.Module, out: Path | str, *, model_name: str, class_set: str,
                num_classes: int, input_size: tuple[int, int],
                normalization: Normalization | None = None,
                config_hash: str | None = None) -> ModelArtifact:
    """Exports `model` (eval mode) with the TorchScript exporter and writes the sidecar."""
    normalization = normalization or Normalization()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    wrapped = Normalized(model.eval(), normalization.mean, normalization.std).eval()
    dummy = torch.zeros(1, 3, *input_size)
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (the dynamo one stays at opset 18,
        # which TensorRT 8.5 / 8.6 cannot read); its deprecation notice is not news.
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(wrapped, (dummy,), str(out), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=['image'], output_names=['scores'])
    artifact = ModelArtifact(
        path=out, format='onnx', model=model_name, class_set=class_set,
        num_classes=num_classes, input_size=tuple(input_size),
        normalization=Normalization(True, tuple(normalization.mean), tuple(normalization.std)),
        output_kind='logits', config_hash=config_hash)
    write_sidecar(artifact)
    return artifact
