"""`build_engine`: prebuild the TensorRT engine of an ONNX artefact into the engine cache.

    build_engine --model ARTIFACT.onnx [--precision fp32|fp16|int8] [--cache-dir DIR] [--force]

Run it once per machine (and after a TensorRT or model update) so that the node's first
start loads the engine instead of building it, which takes minutes on a Jetson. Prints the
engine path; exit status 2 when TensorRT or a GPU is missing or the model cannot be loaded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
import sys

from seg_perception.core.backends.tensorrt_backend import PRECISIONS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', type=Path, required=True, help='ONNX artefact (.onnx)')
    parser.add_argument('--precision', choices=PRECISIONS, default='fp16',
                        help='int8 needs Q/DQ nodes in the graph; TensorRT 11 takes '
                             'precision from the ONNX (default: %(default)s)')
    parser.add_argument('--cache-dir', type=Path,
                        help='engine cache (default: ~/.cache/seg_perception/engines)')
    parser.add_argument('--force', action='store_true', help='rebuild even if cached')
    args = parser.parse_args(argv)

    from seg_perception.core.artifact import ModelLoadError, load_artifact
    from seg_perception.core.backends.base import BackendUnavailable
    from seg_perception.core.backends.tensorrt_backend import prebuild

    # Progress (parsing, building, timing, cache hits) goes to stderr; stdout is the path.
    logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stderr)
    try:
        artifact = load_artifact(args.model)
        path = prebuild(artifact, precision=args.precision, cache_dir=args.cache_dir,
                        force=args.force)
    except (BackendUnavailable, ModelLoadError) as err:
        print(f'build_engine: {err}', file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
