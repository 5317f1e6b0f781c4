"""`complexity`: parameters, MACs, FLOPs and BNN OPs of the registered models.

    complexity [--model NAME ...] [--size HxW] [--num-classes N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

NOTE = ('FLOPs = 2 x MACs. Papers often print MACs under the name "FLOPs" (thop / ptflops '
        'count MACs), so compare a paper\'s "FLOPs" with the MACs column first. '
        'OPs = float MACs + binary MACs / 64 and BNN params = float + binary / 32, as BiDense '
        'counts them. MACs cover conv and linear layers.')


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must be HxW, got {text!r}') from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f'size must be positive, got {text!r}')
    return height, width


def main(argv: list[str] | None = None) -> int:
    from seg_perception.models import build_model, list_models
    from seg_perception.models.complexity import count

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', nargs='+', default=None, help='default: every model')
    parser.add_argument('--size', type=parse_size, default=(512, 1024), help='H x W')
    parser.add_argument('--num-classes', type=int, default=19)
    parser.add_argument('--json', action='store_true', help='print a JSON list instead')
    args = parser.parse_args(argv)
    known = list_models()
    names = args.model or known
    unknown = [n for n in names if n not in known]
    if unknown:
        parser.error(f'unknown model(s) {", ".join(unknown)} (registered: {", ".join(known)})')
    rows = [count(build_model(n, num_classes=args.num_classes), args.size, name=n,
                  num_classes=args.num_classes) for n in names]
    if args.json:
        json.dump([r.as_dict() for r in rows], sys.stdout, indent=2)
        print()
        return 0
    print(f'input {rows[0].size}, {args.num_classes} classes\n')
    print(f'{"model":<14} {"params":>10} {"binary":>10} {"GMACs":>9} {"bin GMACs":>9} '
          f'{"GFLOPs":>9} {"G OPs":>9} {"BNN params":>11}')
    for r in rows:
        print(f'{r.name:<14} {r.params:>10,} {r.binary_params:>10,} {r.macs / 1e9:>9.3f} '
              f'{r.binary_macs / 1e9:>9.3f} {r.flops / 1e9:>9.3f} {r.ops / 1e9:>9.3f} '
              f'{r.bnn_params:>11,.0f}')
    print(f'\n{NOTE}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
