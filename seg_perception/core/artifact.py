"""Model artefacts: an ONNX file or a torch checkpoint, plus a YAML sidecar beside it.

The sidecar is the only contract between training and runtime. For `model.onnx` (or
`model.pt`) it is `model.yaml`:

    format_version: 1
    model: bisenet_lite          # architecture name in the model registry
    class_set: camvid11          # config/classes/<name>.yaml
    num_classes: 11
    input_size: [360, 480]       # network input, H x W pixels
    normalization: {in_graph: true, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}
    output_kind: logits          # logits | probabilities, (N, C, h, w)
    config_hash: ...             # optional: hash of the training config
    model_options: {}            # optional: builder keyword options (e.g. width, binary)
    binarize: null               # optional: binarize_model options applied after building

The network input is float32 NCHW RGB. With `in_graph: true` it takes raw 0..255 values and
normalises itself; otherwise the runtime feeds (x / 255 - mean) / std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from seg_perception.core.atomic import atomic_write

SIDECAR_VERSION = 1
MODEL_SUFFIXES = {'.onnx': 'onnx', '.pt': 'torch', '.pth': 'torch'}
OUTPUT_KINDS = ('logits', 'probabilities')


class ModelLoadError(RuntimeError):
    """A model artefact could not be loaded; the message names the file and the cause."""

    def __init__(self, path: Path | str, cause: str):
        self.path = Path(path)
        self.cause = cause
        super().__init__(f'cannot load model {self.path}: {cause}')


@dataclass(frozen=True)
class Normalization:
    """Per-channel RGB mean / std in 0..1 units; `in_graph` says the network applies them."""

    in_graph: bool = True
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelArtifact:
    path: Path
    format: str
    model: str
    class_set: str
    num_classes: int
    input_size: tuple[int, int]
    normalization: Normalization = field(default_factory=Normalization)
    output_kind: str = 'logits'
    config_hash: str | None = None
    model_options: dict = field(default_factory=dict)
    binarize: dict | None = None

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)

    def metadata(self) -> dict:
        """The sidecar content of this artefact (what `write_sidecar` stores)."""
        meta = asdict(self)
        for key in ('path', 'format'):
            meta.pop(key)
        meta['input_size'] = list(self.input_size)
        meta['normalization'] = {
            'in_graph': self.normalization.in_graph,
            'mean': list(self.normalization.mean),
            'std': list(self.normalization.std),
        }
        return {'format_version': SIDECAR_VERSION, **meta}


def sidecar_path(model_path: Path | str) -> Path:
    return Path(model_path).with_suffix('.yaml')


def write_sidecar(artifact: ModelArtifact) -> Path:
    """Writes the sidecar of `artifact` beside its model file (atomically: a reader never
    sees half of one) and returns its path."""
    path = artifact.sidecar
    text = yaml.safe_dump(artifact.metadata(), sort_keys=False).encode()
    atomic_write(path, lambda f: f.write(text))
    return path


def load_artifact(model_path: Path | str) -> ModelArtifact:
    """Reads and checks the sidecar of `model_path`; raises ModelLoadError on any problem."""
    path = Path(model_path)
    fmt = MODEL_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ModelLoadError(path, f'unknown model file type {path.suffix!r} '
                                   f'(expected one of {sorted(MODEL_SUFFIXES)})')
    if not path.is_file():
        raise ModelLoadError(path, 'file not found')
    side = sidecar_path(path)
    if not side.is_file():
        raise ModelLoadError(path, f'sidecar {side} not found (written by export_model)')
    try:
        meta = yaml.safe_load(side.read_text())
    except yaml.YAMLError as err:
        raise ModelLoadError(path, f'sidecar {side} is not valid YAML: {err}') from err
    if not isinstance(meta, dict):
        raise ModelLoadError(path, f'sidecar {side} is not a mapping')
    try:
        return _parse(path, fmt, meta)
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(path, f'sidecar {side}: {err}') from err


def _parse(path: Path, fmt: str, meta: dict) -> ModelArtifact:
    from seg_perception.core.classes import load_class_set

    version = int(meta.get('format_version', SIDECAR_VERSION))
    if version > SIDECAR_VERSION:
        raise ValueError(f'format_version {version} is newer than this package reads')
    for key in ('model', 'class_set', 'num_classes', 'input_size'):
        if key not in meta:
            raise KeyError(f'missing key {key!r}')
    height, width = (int(v) for v in meta['input_size'])
    if height <= 0 or width <= 0:
        raise ValueError(f'input_size must be positive, got {meta["input_size"]}')
    num_classes = int(meta['num_classes'])
    try:
        class_set = load_class_set(str(meta['class_set']))
    except FileNotFoundError as err:
        raise ValueError(str(err)) from err
    if class_set.num_classes != num_classes:
        raise ValueError(f'num_classes {num_classes} does not match class set '
                         f'{class_set.name!r} ({class_set.num_classes} classes)')
    kind = str(meta.get('output_kind', 'logits'))
    if kind not in OUTPUT_KINDS:
        raise ValueError(f'output_kind {kind!r} is not one of {OUTPUT_KINDS}')
    norm = meta.get('normalization') or {}
    normalization = Normalization(
        in_graph=bool(norm.get('in_graph', True)),
        mean=tuple(float(v) for v in norm.get('mean', Normalization.mean)),
        std=tuple(float(v) for v in norm.get('std', Normalization.std)),
    )
    if len(normalization.mean) != 3 or len(normalization.std) != 3:
        raise ValueError('normalization mean and std need 3 values (RGB)')
    return ModelArtifact(
        path=path,
        format=fmt,
        model=str(meta['model']),
        class_set=class_set.name,
        num_classes=num_classes,
        input_size=(height, width),
        normalization=normalization,
        output_kind=kind,
        config_hash=meta.get('config_hash'),
        model_options=_mapping(meta.get('model_options'), 'model_options'),
        binarize=None if meta.get('binarize') is None
        else _mapping(meta['binarize'], 'binarize'),
    )


def _mapping(value, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f'{key} must be a mapping, got {type(value).__name__}')
    return dict(value)
