"""`export_model`: checkpoint -> ONNX (opset 17, normalisation in the graph) + sidecar.

    export_model --model NAME --num-classes N --size HxW [--checkpoint CKPT] [--binary]
                 [--fp16-weights] --out OUT.onnx

Without --checkpoint the weights are random (tests, benchmarks). A training checkpoint's
sidecar (checkpoints/best.yaml) supplies the builder options, binarisation and class set.
A network with binary layers is exported in deploy mode as an exact INT8 Q/DQ graph (INT8
+-1 weights with per-channel scale alpha, sign activations quantised with scale 1;
`models/export.py`); --binary asks for that and fails on a network without binary layers.
Every export is linted for TensorRT (`core/onnx_lint.py`): on a lint failure the command
exits with the issues listed and leaves the .onnx, without a sidecar, for inspection.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from seg_perception.tools.complexity import parse_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='registered model name')
    parser.add_argument('--num-classes', type=int, required=True)
    parser.add_argument('--size', type=parse_size, required=True, help='input H x W')
    parser.add_argument('--checkpoint', type=Path, help='training checkpoint (.pt)')
    parser.add_argument('--binary', action='store_true',
                        help='export the binary layers as INT8 Q/DQ in deploy mode (implied '
                             'when the model has binary layers; an error when it has none)')
    parser.add_argument('--class-set', help='default: from the checkpoint sidecar, or by count')
    parser.add_argument('--fp16-weights', action='store_true',
                        help='store conv / matmul weights as float16 read through a Cast (half '
                             'the file; the same float graph once loaded, weights rounded once)')
    parser.add_argument('--out', type=Path, required=True)
    args = parser.parse_args(argv)

    import torch

    from seg_perception.core.artifact import ModelLoadError, load_artifact
    from seg_perception.core.classes import class_set_for
    from seg_perception.core.onnx_lint import OnnxLintError
    from seg_perception.models.artifact_model import build_network
    from seg_perception.models.binarize import binary_layers, deploy_model
    from seg_perception.models.export import export_onnx

    options, binarize, class_set, config_hash = {}, None, args.class_set, None
    if args.checkpoint is not None:
        try:
            meta = load_artifact(args.checkpoint)
        except ModelLoadError as err:
            parser.error(str(err))
        if meta.model != args.model or meta.num_classes != args.num_classes:
            parser.error(f'{args.checkpoint} holds {meta.model} with {meta.num_classes} '
                         f'classes, not {args.model} with {args.num_classes}')
        options, binarize = meta.model_options, meta.binarize
        class_set, config_hash = class_set or meta.class_set, meta.config_hash
    model = build_network(args.model, args.num_classes, options, binarize, args.size)
    if args.checkpoint is not None:
        state = torch.load(args.checkpoint, map_location='cpu', weights_only=True)
        model.load_state_dict(state.get('model', state))
    binary = any(layer.binary for _, layer in binary_layers(model))
    if args.binary and not binary:
        parser.error(f'--binary: {args.model} has no binary layers (a binarised checkpoint '
                     'sidecar or a binary model needed)')
    if binary:
        deploy_model(model)
    try:
        artifact = export_onnx(model.eval(), args.out, model_name=args.model,
                               class_set=class_set or class_set_for(args.num_classes),
                               num_classes=args.num_classes, input_size=args.size,
                               config_hash=config_hash, model_options=options,
                               binarize=binarize, qdq=binary,
                               fp16_weights=args.fp16_weights)
    except OnnxLintError as err:
        print(f'export_model: {err}', file=sys.stderr)
        return 1
    except ValueError as err:  # e.g. --fp16-weights on a binary network
        parser.error(str(err))
    print(f'wrote {artifact.path} and {artifact.sidecar}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
