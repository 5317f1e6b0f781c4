"""The package as ROS users get it: package.xml, and a real colcon build of the checkout."""

from pathlib import Path
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME_DEPENDS = {'rclpy', 'sensor_msgs', 'std_msgs', 'nav_msgs', 'diagnostic_msgs',
                   'lifecycle_msgs', 'launch', 'launch_ros', 'python3-numpy', 'python3-opencv',
                   'python3-yaml'}


def test_package_xml_is_format_3_ament_python_with_runtime_depends():
    root = ET.parse(REPO / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'seg_perception'
    assert root.findtext('export/build_type') == 'ament_python'
    exec_depends = {e.text for e in root.findall('exec_depend')}
    assert RUNTIME_DEPENDS <= exec_depends, RUNTIME_DEPENDS - exec_depends
    assert root.findall('test_depend')


@pytest.fixture(scope='module')
def colcon_install(tmp_path_factory):
    colcon = shutil.which('colcon') or str(Path(sys.executable).with_name('colcon'))
    if not Path(colcon).exists():
        pytest.skip('colcon is not installed (make setup installs it)')
    workspace = tmp_path_factory.mktemp('ws')
    files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file():
            dst = workspace / 'src' / 'seg_perception' / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    result = subprocess.run([colcon, 'build'], cwd=workspace, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return workspace / 'install' / 'seg_perception'


def test_colcon_install_layout(colcon_install):
    share = colcon_install / 'share' / 'seg_perception'
    index = colcon_install / 'share' / 'ament_index' / 'resource_index' / 'packages'
    assert (index / 'seg_perception').is_file()
    for rel in ('package.xml', 'config/segmenter.yaml', 'config/fastdds_localhost_shm.xml',
                'config/classes/camvid11.yaml', 'config/classes/cityscapes19.yaml',
                'launch/segmenter.launch.py', 'launch/jetson.launch.py',
                'launch/desktop.launch.py', 'config/jetson.yaml', 'config/desktop.yaml',
                'config/seg_perception.rviz', 'models/fcn_tiny_camvid.onnx',
                'models/fcn_tiny_camvid.yaml'):
        assert (share / rel).is_file(), rel
    assert (colcon_install / 'lib' / 'seg_perception' / 'segmenter_node').is_file()
    site = next((colcon_install / 'lib').glob('python3*/site-packages'))
    assert (site / 'seg_perception' / 'core' / 'segmenter.py').is_file()
    assert not (site / 'training').exists(), 'training/ is for the checkout, not installed'
    assert not (site / 'test').exists()


def test_installed_node_finds_its_shipped_model_and_config(colcon_install, tmp_path):
    """Run from elsewhere: data files must come from the ament share folder."""
    import os

    site = next((colcon_install / 'lib').glob('python3*/site-packages'))
    env = dict(os.environ)
    env['PYTHONPATH'] = str(site)
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(
        p for p in (str(colcon_install), env.get('AMENT_PREFIX_PATH')) if p)
    env['ROS_DOMAIN_ID'] = str(int(env.get('ROS_DOMAIN_ID', '60')) + 20)
    script = colcon_install / 'lib' / 'seg_perception' / 'segmenter_node'
    proc = subprocess.Popen([sys.executable, str(script), '--ros-args', '-r', '__ns:=/t_inst'],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if 'listening on' in line or len(lines) > 20:
                break
    finally:
        proc.terminate()
        proc.wait(10)
    out = ''.join(lines)
    shipped = colcon_install / 'share' / 'seg_perception' / 'models' / 'fcn_tiny_camvid.onnx'
    assert f'loaded {shipped}' in out, out
    assert 'listening on /t_inst/image' in out, out
