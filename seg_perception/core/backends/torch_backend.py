"""PyTorch backend: runs a checkpoint that has not been exported yet (and parity tests)."""

from __future__ import annotations

import numpy as np

from seg_perception.core.artifact import ModelArtifact, ModelLoadError
from seg_perception.core.backends.base import BackendUnavailable


class TorchBackend:
    name = 'torch'

    def __init__(self, model, device):
        self._model = model
        self._device = device

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._model(torch.from_numpy(batch).to(self._device))
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, str]:
        import torch

        return {'backend': self.name, 'version': torch.__version__, 'device': str(self._device)}


def load(artifact: ModelArtifact, *, threads: int = 0) -> TorchBackend:
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailable('torch', f'cannot import torch ({err})') from err
    from seg_perception.models.artifact_model import build_for_artifact

    if threads > 0:
        torch.set_num_threads(threads)
    try:
        # weights_only: a checkpoint is data; no pickled code from it ever runs.
        checkpoint = torch.load(artifact.path, map_location='cpu', weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (zip), EOFError, ...
        raise ModelLoadError(artifact.path, f'not a loadable torch checkpoint ({err})') from err
    state = checkpoint.get('model', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelLoadError(artifact.path, 'checkpoint holds no state_dict')
    try:
        model = build_for_artifact(artifact)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(artifact.path, f'cannot build {artifact.model!r}: {err}') from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ModelLoadError(artifact.path, f'weights do not fit {artifact.model!r}: '
                                            f'{str(err).splitlines()[0]}') from err
    if artifact.binarize is not None:
        from seg_perception.models.binarize import deploy_model

        deploy_model(model)  # pure sign, precomputed binary weights: what export ships
    if artifact.normalization.in_graph:
        # The sidecar is shared with the exported ONNX, which normalises inside the graph.
        from seg_perception.models.normalized import Normalized

        norm = artifact.normalization
        model = Normalized(model, norm.mean, norm.std)
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return TorchBackend(model.eval().to(device), device)
