"""The `bench` command's interface (timings themselves are read from its output, not tested)."""

import json

from seg_perception.tools.bench import PAPER_SIZES_WH, main


def test_bench_json_rows_per_model_backend_size(capsys, tmp_path):
    csv = tmp_path / 'bench.csv'
    assert main(['--model', 'fcn_tiny', '--backend', 'torch', 'onnxruntime', '--size', '64x96',
                 '--warmup', '0', '--runs', '1', '--num-classes', '11', '--json',
                 '--csv', str(csv)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r['model'], r['backend'], r['size']) for r in rows] == [
        ('fcn_tiny', 'torch', '64x96'), ('fcn_tiny', 'onnxruntime', '64x96')]
    for row in rows:
        assert row['median_ms'] > 0 and abs(row['fps'] - 1e3 / row['median_ms']) < 1e-6
    assert csv.read_text().splitlines()[0] == 'model,backend,size,median_ms,fps'


def test_paper_sizes_are_the_lightweight_bisenet_table():
    assert PAPER_SIZES_WH == ((1024, 1024), (1280, 720), (800, 800), (600, 600), (640, 360),
                              (400, 400))
