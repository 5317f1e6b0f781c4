"""bag_eval: score a model on a recorded bag through the live node graph (or offline).

    bag_eval --bag BAG --model ARTIFACT [--task multiclass|human|vehicle]
             [--deterministic | --offline] --report DIR
             [--rate-scale X] [--use-sim-time] [--record OUT_BAG] [--limit N] [--samples N]
             [--backend auto|onnxruntime|torch|tensorrt] [--extra TASK=MODEL ...]
             [--attach NAMESPACE [--input-topic T]]

Modes:
  (default)        realtime: frames at their recorded rate into a segmenter started for the
                   run (or --attach'ed); frames it drops count as dropped.
  --deterministic  each frame waits for the previous one's outputs: every frame is scored.
  --offline        no ROS: frames straight through the Segmenter (same metric code).
The deterministic result equals the offline one exactly on the same frames.

Ground truth is the bag's /camera/labels_gt (make_bag writes it), in CamVid's 11 classes;
human / vehicle tasks score a binary model against Pedestrian + Bicyclist / Car of it.
Writes DIR/report.json, report.md, per_class_iou.png, latency_hist.png, samples/*.png.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
import sys
import tempfile
import time

from tqdm import tqdm

from seg_perception.core.bagio import COMPRESSED, LABELS_TOPIC, BagError, read_bag
from seg_perception.core.classes import ClassSet, load_class_set
from seg_perception.core.paths import resolve_model_path
from seg_perception.core.replay_eval import (
    TASKS,
    FrameResult,
    Scorer,
    check_task,
    sample_indices,
    sample_row,
    write_report,
)

NODE_NAMES = {'multiclass': 'segmenter', 'human': 'human_mask', 'vehicle': 'vehicle_mask'}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('--bag', type=Path, required=True, help='rosbag2 folder (make_bag)')
    parser.add_argument('--model', required=True,
                        help='ONNX or checkpoint with its .yaml sidecar (path or models/ name)')
    parser.add_argument('--task', choices=TASKS, default='multiclass')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--deterministic', action='store_true',
                      help='wait for each frame\'s outputs before the next')
    mode.add_argument('--offline', action='store_true', help='no ROS: Segmenter directly')
    parser.add_argument('--report', type=Path, required=True, help='report folder')
    parser.add_argument('--backend', default='onnxruntime')
    parser.add_argument('--rate-scale', type=float, default=1.0,
                        help='realtime: play this many times faster than recorded')
    parser.add_argument('--use-sim-time', action='store_true',
                        help='publish /clock from the frame stamps; node uses sim time')
    parser.add_argument('--record', type=Path, help='also write the node outputs to this bag')
    parser.add_argument('--limit', type=int, help='first N frames only')
    parser.add_argument('--samples', type=int, default=4, help='sample images in the report')
    parser.add_argument('--image-topic', help='camera topic in the bag (default: found)')
    parser.add_argument('--labels-topic', default=LABELS_TOPIC)
    parser.add_argument('--timeout', type=float, default=10.0,
                        help='seconds to wait for a frame\'s outputs (deterministic)')
    parser.add_argument('--resend-after', type=float, default=3.0,
                        help='deterministic: publish a frame again if its outputs are not all '
                             'in after this many seconds (default 3)')
    parser.add_argument('--extra', type=_parse_extra, action='append', default=[],
                        metavar='TASK=MODEL',
                        help='also score this model in the same replay (repeatable), e.g. '
                             'human=bisenet_lite_human.onnx: its node runs beside the first')
    parser.add_argument('--attach', metavar='NAMESPACE',
                        help='evaluate the running nodes of this namespace (segmenter, '
                             'human_mask, vehicle_mask as the launch files name them) instead '
                             'of starting them; "" or / for the root namespace')
    parser.add_argument('--input-topic',
                        help='topic to publish frames on (default: the started node\'s input; '
                             'with --attach: the bag\'s camera topic)')
    parser.add_argument('--domain-id', type=int, default=38,
                        help='ROS_DOMAIN_ID for the run (not with --attach: inherited)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--ros-args' in argv:  # started by launch_ros (launch/replay.launch.py)
        argv = argv[:argv.index('--ros-args')]
    args = parser.parse_args(argv)
    args.mode = 'offline' if args.offline else (
        'deterministic' if args.deterministic else 'realtime')
    return args


@dataclass
class Target:
    """One model scored in the run: its node, metrics and sample rows."""

    task: str
    model: Path
    class_set: ClassSet
    scorer: Scorer
    node_name: str
    fqn: str = ''
    rows: list = field(default_factory=list)
    latencies: list = field(default_factory=list)
    arrivals: list = field(default_factory=list)

    @property
    def outputs(self) -> tuple[str, ...]:
        return ('labels', 'overlay', 'drivable' if self.task == 'multiclass' else 'mask')


def _parse_extra(text: str) -> tuple[str, str]:
    task, sep, model = text.partition('=')
    if not sep or task not in TASKS or not model:
        raise argparse.ArgumentTypeError(f'expected TASK=MODEL with TASK one of '
                                         f'{", ".join(TASKS)}, got {text!r}')
    return task, model


def make_targets(args: argparse.Namespace) -> list[Target]:
    from seg_perception.core.artifact import load_artifact

    targets = []
    for task, name in [(args.task, args.model), *args.extra]:
        if any(t.task == task for t in targets):
            raise ValueError(f'task {task} is given twice; each node is scored once')
        model = resolve_model_path(name)
        artifact = load_artifact(model)  # ModelLoadError names the file and the cause
        check_task(task, artifact.class_set)
        class_set = load_class_set(artifact.class_set)
        targets.append(Target(task, model, class_set, Scorer(class_set, task),
                              NODE_NAMES[task]))
    return targets


def run(args: argparse.Namespace) -> dict:
    """Evaluates; returns the report of the first model (also written to args.report, the
    other models' reports to args.report/<task>/ and a summary of each under `tasks`)."""
    targets = make_targets(args)
    contents = read_bag(args.bag, image_topic=args.image_topic, labels_topic=args.labels_topic,
                        limit=args.limit)
    frames = contents.frames
    if not frames:
        raise BagError(f'{args.bag} has no decodable frames on {contents.image_topic}')
    wanted = sample_indices(len(frames), args.samples)
    notes = list(contents.warnings) + [f'rejected by the reader: {r}' for r in contents.rejected]
    info: list[str] = []
    if args.mode == 'offline':
        walls = {t.task: _offline(args, t, frames, wanted) for t in targets}
        diagnostics = {}
    else:
        walls, diagnostics = _live(args, targets, frames, wanted, notes, info)
    reports = {}
    for target in targets:
        report = target.scorer.summary(sent=len(frames), rejected=len(contents.rejected),
                                       wall_s=walls.get(target.task))
        report.update({
            'mode': args.mode, 'model': str(target.model), 'model_name': target.model.stem,
            'bag': str(args.bag), 'bag_name': args.bag.name, 'backend': args.backend,
            'image_topic': contents.image_topic, 'latencies_ms': target.latencies,
            'node': target.fqn, 'node_diagnostics': diagnostics.get(target.fqn, {}),
            'info': info, 'warnings': notes,
        })
        if report['node_diagnostics'].get('backend'):
            report['backend'] = report['node_diagnostics']['backend']
        reports[target.task] = report
    main_report = reports[targets[0].task]
    if len(targets) > 1:
        main_report['tasks'] = {task: _brief(r) for task, r in reports.items()}
    for i, target in enumerate(targets):
        folder = args.report if i == 0 else args.report / target.task
        report = reports[target.task]
        report['files'] = [str(p.relative_to(folder)) for p in
                           write_report(folder, report, target.rows)]
    return main_report


def _brief(report: dict) -> dict:
    keys = ('model', 'miou', 'positive_iou', 'pixel_accuracy', 'latency_ms', 'frames', 'fps')
    return {k: report[k] for k in keys if k in report}


def _offline(args, target: Target, frames, wanted) -> float:
    from seg_perception.core.outputs import render_outputs
    from seg_perception.core.segmenter import Segmenter

    segmenter = Segmenter.from_path(target.model, backend=args.backend)
    drivable = None if segmenter.is_binary else _default_drivable(segmenter)
    started = time.monotonic()
    for frame in tqdm(frames, desc=f'offline {target.task}', unit='frame', disable=args.quiet,
                      file=sys.stderr):
        result = segmenter(frame.rgb, confidence=False)
        out = FrameResult(frame.index, frame.stamp_ns, result.labels)
        if frame.index in wanted:
            images = render_outputs(result, frame.rgb, {'overlay', 'drivable', 'mask'},
                                    segmenter.class_set, drivable)
            out.overlay, out.drivable = images.get('overlay'), images.get('drivable')
            out.mask = images.get('mask')
            target.rows.append((frame.index, sample_row(
                frame.rgb, frame.label, out, target.class_set, target.task,
                target.scorer.gt_class_set)))
        target.scorer.add(out, frame.label)
    return time.monotonic() - started  # FPS of the Segmenter alone, samples included


def _default_drivable(segmenter):
    """The drivable-area estimator a node with default parameters builds (DrivableConfig's
    defaults are the node's; test_bag_eval checks that they agree)."""
    from seg_perception.core.drivable import DEFAULT_CLASSES, DrivableArea, DrivableConfig

    ids = tuple(segmenter.class_set.index(n) for n in DEFAULT_CLASSES)
    return DrivableArea(DrivableConfig(class_ids=ids))


def _live(args, targets: list[Target], frames, wanted, notes: list[str], info: list[str]):
    """Replays into the nodes; returns ({task: wall seconds}, {node: diagnostics})."""
    from seg_perception.ros.conversions import output_array
    from seg_perception.tools.ros_env import apply_ros_environment

    log_dir = Path(tempfile.gettempdir()) / f'seg_perception_bag_eval_{args.domain_id}'
    if args.attach is None:
        apply_ros_environment(args.domain_id, log_dir / 'ros_log')
    from seg_perception.core.bagio import write_messages
    from seg_perception.ros.bag_player import BagPlayer
    from seg_perception.ros.frame_client import spinning_node
    from seg_perception.tools.node_process import NodeProcess

    compressed = frames[0].msgtype == COMPRESSED
    namespace = (args.attach if args.attach is not None else '/bag_eval').rstrip('/')
    for target in targets:
        target.fqn = f'{namespace}/{target.node_name}'
    if args.attach is not None:
        input_topic = args.input_topic or frames[0].topic
    else:
        input_topic = args.input_topic or (
            f'{namespace}/image/compressed' if compressed else f'{namespace}/image')
    with spinning_node('seg_perception_bag_eval') as node:
        procs = []
        if args.attach is None:
            for target in targets:
                params = {'model': str(target.model), 'backend': args.backend,
                          'input_transport': 'compressed' if compressed else 'raw',
                          'use_sim_time': bool(args.use_sim_time)}
                procs.append(NodeProcess(namespace, params, log_dir / f'{target.node_name}.log',
                                         name=target.node_name))
        player = BagPlayer(node, input_topic, {t.fqn: t.outputs for t in targets}, compressed,
                           use_sim_time=args.use_sim_time)
        player.record = args.record is not None
        try:
            try:
                player.wait_connected()
            except TimeoutError as err:
                logs = '\n'.join(f'{p.fqn}:\n{p.output()}' for p in procs)
                raise RuntimeError(f'{err}' + (f'\nnode output:\n{logs}' if logs else '')) \
                    from None
            bar = tqdm(total=len(frames), desc=args.mode, unit='frame', disable=args.quiet,
                       file=sys.stderr)
            notes += player.play(frames, deterministic=args.mode == 'deterministic',
                                 rate_scale=args.rate_scale, timeout=args.timeout,
                                 resend_after=args.resend_after, progress=lambda i: bar.update())
            bar.close()
            time.sleep(1.2)  # one more /diagnostics period
            diagnostics = dict(player.diagnostics)
        finally:
            player.close()
            for proc in procs:
                code = proc.stop()
                if code not in (0, -15):
                    notes.append(f'{proc.fqn} exited with {code}; log: {proc.log}')
    walls = {}
    for target in targets:
        for frame in frames:
            got = player.results(frame)
            labels = got.get(target.fqn, 'labels') if got else None
            if labels is None:
                continue
            msg, arrived = labels
            latency = (arrived - player.sent_at[frame.stamp_ns]) * 1e3
            target.latencies.append(latency)
            target.arrivals.append(arrived)
            out = FrameResult(frame.index, frame.stamp_ns, output_array(msg), latency)
            if frame.index in wanted:
                for name in target.outputs[1:]:
                    item = got.get(target.fqn, name)
                    if item is not None:
                        setattr(out, name, output_array(item[0]))
                target.rows.append((frame.index, sample_row(
                    frame.rgb, frame.label, out, target.class_set, target.task,
                    target.scorer.gt_class_set)))
            target.scorer.add(out, frame.label)
        # FPS over the replay: first frame sent -> last labels received.
        if target.arrivals:
            walls[target.task] = max(target.arrivals) - min(player.sent_at.values())
    if args.record is not None:
        count = write_messages(args.record, sorted(player.recorded, key=lambda m: m[2]))
        info.append(f'recorded {count} output messages to {args.record}')
    return walls, diagnostics


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from seg_perception.core.artifact import ModelLoadError

    try:
        report = run(args)
    except (BagError, ModelLoadError, ValueError, RuntimeError) as err:
        print(f'bag_eval: {err}', file=sys.stderr)
        return 2
    lat, frames = report['latency_ms'], report['frames']
    line = f'{report["model_name"]} on {report["bag_name"]} ({report["mode"]}): '
    if 'positive_iou' in report:
        line += f'{args.task} IoU {100 * (report["positive_iou"] or 0):.1f}, '
    line += (f'mIoU {100 * (report["miou"] or 0):.1f}, pixel accuracy '
             f'{100 * (report["pixel_accuracy"] or 0):.1f}; frames {frames["processed"]}/'
             f'{frames["sent"]} processed, {frames["dropped"]} dropped')
    if lat['p50'] is not None:
        line += f'; latency p50 {lat["p50"]:.1f} ms, p99 {lat["p99"]:.1f} ms'
    if report.get('fps'):
        line += f'; {report["fps"]:.1f} FPS'
    print(line)
    for note in report['warnings']:
        print(f'  warning: {note}')
    for task, brief in report.get('tasks', {}).items():
        if task != args.task:
            lat = brief['latency_ms']
            print(f'  {task}: IoU {100 * (brief.get("positive_iou") or 0):.1f}'
                  + (f', latency p50 {lat["p50"]:.1f} ms, p99 {lat["p99"]:.1f} ms'
                     if lat['p50'] is not None else '')
                  + f' (report in {args.report / task})')
    for note in report['info']:
        print(f'  {note}')
    print(f'  report: {args.report / "report.md"}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
