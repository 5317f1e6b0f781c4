"""PyTorch backend: runs a checkpoint that has not been exported yet (and parity tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seg_perception.core.artifact import ModelArtifact, ModelLoadError
from seg_perception.core.backends.base import BackendUnavailable


class TorchBackend:
    name = 'torch'

    def __init__(self, model, device):
        self._model = model
        self._device = device

    @property
    def network(self):
        """The torch network this backend runs, as built from the checkpoint (in deploy mode
        for binary networks), without the input normalisation the backend puts in front of
        it (if the sidecar asks for it there): what `models.export.export_onnx` takes."""
        from seg_perception.models.normalized import Normalized

        return self._model.model if isinstance(self._model, Normalized) else self._model

    def infer(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self._model(torch.from_numpy(batch).to(self._device))
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, str]:
        import torch

        return {'backend': self.name, 'version': torch.__version__, 'device': str(self._device)}


def load_checkpoint(path: Path) -> object:
    """torch.load with weights_only=True: tensors and plain containers, never pickled code.

    Raises:
        ModelLoadError: not a torch file (truncated, random bytes), or a pickle holding
            objects other than weights, which would run code when loaded and is refused.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message opens with advice to retry with weights_only=False: never here.
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = next((ln for ln in lines[1:] if not ln.startswith(('Please file', 'Check the'))),
                      lines[0] if lines else type(err).__name__)
        if 'GLOBAL' in detail:
            cause = (f'refused: the checkpoint pickles Python objects besides weights '
                     f'({detail}), and loading those could run code')
        else:
            cause = f'not a loadable torch checkpoint ({detail})'
        raise ModelLoadError(path, cause) from err
    except Exception as err:  # RuntimeError (zip), EOFError, OSError, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(path, f'not a loadable torch checkpoint ({first})') from err


def load(artifact: ModelArtifact, *, threads: int = 0) -> TorchBackend:
    try:
        import torch
    except ImportError as err:
        raise BackendUnavailable('torch', f'cannot import torch ({err})') from err
    from seg_perception.models.artifact_model import build_for_artifact

    if threads > 0:
        torch.set_num_threads(threads)
    checkpoint = load_checkpoint(artifact.path)
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
        # The first line only says "Error(s) in loading state_dict"; the next names the tensor.
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise ModelLoadError(artifact.path, f'weights do not fit {artifact.model!r} with '
                                            f'{artifact.num_classes} classes (sidecar): '
                                            f'{lines[min(1, len(lines) - 1)]}') from err
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
