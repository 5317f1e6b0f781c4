"""The node list behind the launch files, and the launch file itself where launch_ros exists."""

import ast
from pathlib import Path
import runpy

import pytest

from seg_perception.core.paths import config_dir
from seg_perception.launch_config import segmenter_nodes

REPO = Path(__file__).resolve().parents[1]


def test_default_segmenter_node():
    (spec,) = segmenter_nodes()
    assert (spec.package, spec.executable, spec.name) == ('seg_perception', 'segmenter_node',
                                                         'segmenter')
    assert spec.parameters[0] == str(config_dir() / 'segmenter.yaml')
    assert spec.parameters[1] == {'use_sim_time': False}
    assert ('image', '/camera/image_raw') in spec.remappings
    assert ('image/compressed', '/camera/image_raw/compressed') in spec.remappings
    assert spec.arguments == ['--ros-args', '--log-level', 'info']


def test_overrides_come_after_the_yaml_so_they_win():
    (spec,) = segmenter_nodes(camera_topic='/front/rgb', namespace='robot1', model='m.onnx',
                              backend='torch', input_transport='compressed',
                              use_sim_time=True, params_file='/etc/seg.yaml', log_level='debug')
    assert spec.namespace == 'robot1'
    assert spec.parameters == ['/etc/seg.yaml', {'use_sim_time': True, 'model': 'm.onnx',
                                                 'backend': 'torch',
                                                 'input_transport': 'compressed'}]
    assert ('image/compressed', '/front/rgb/compressed') in spec.remappings


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='log_level'):
        segmenter_nodes(log_level='loud')
    with pytest.raises(ValueError, match='camera_topic'):
        segmenter_nodes(camera_topic=' ')


def test_launch_files_parse_and_declare_their_arguments():
    for path in sorted((REPO / 'launch').glob('*.launch.py')):
        tree = ast.parse(path.read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert 'generate_launch_description' in names, path


def test_launch_file_builds_with_launch_ros():
    pytest.importorskip('launch_ros', reason='launch_ros is not on PyPI; runs on a ROS install')
    module = runpy.run_path(str(REPO / 'launch' / 'segmenter.launch.py'))
    assert module['generate_launch_description']().entities


def test_perception_profiles_start_three_nodes_with_their_yaml():
    from seg_perception.launch_config import PERCEPTION_NODES, perception_nodes

    for profile in ('jetson', 'desktop'):
        specs = perception_nodes(profile=profile, camera_topic='/cam/rgb', precision='int8')
        assert [s.name for s in specs] == list(PERCEPTION_NODES)
        for spec in specs:
            assert spec.parameters == [str(config_dir() / f'{profile}.yaml'),
                                       {'use_sim_time': False, 'precision': 'int8'}]
            assert ('image', '/cam/rgb') in spec.remappings
    (only,) = perception_nodes(profile='desktop', masks=False, backend='torch')
    assert only.name == 'segmenter' and only.parameters[1]['backend'] == 'torch'
    with pytest.raises(ValueError, match='profile'):
        perception_nodes(profile='cloud')
    with pytest.raises(ValueError, match='precision'):
        perception_nodes(profile='jetson', precision='int4')


@pytest.mark.parametrize('profile', ['jetson', 'desktop'])
def test_profile_yaml_sets_only_real_parameters_of_each_node(profile):
    import yaml

    from seg_perception.launch_config import PERCEPTION_NODES
    from seg_perception.ros.params import SegmenterNodeConfig, validate

    data = yaml.safe_load((config_dir() / f'{profile}.yaml').read_text())
    assert set(data) == {f'/**/{name}' for name in PERCEPTION_NODES}
    for section in data.values():
        params = section['ros__parameters']
        assert set(params) <= set(SegmenterNodeConfig.__dataclass_fields__)
        assert all(validate(k, v) is None for k, v in params.items())


def test_rviz_config_shows_every_image_output():
    import yaml

    from seg_perception.launch_config import rviz_config

    config = yaml.safe_load(rviz_config().read_text())
    topics = {d['Topic']['Value'] for d in config['Visualization Manager']['Displays']
              if d['Class'] == 'rviz_default_plugins/Image'}
    assert topics == {'/segmenter/overlay', '/segmenter/color', '/segmenter/drivable',
                      '/human_mask/mask', '/vehicle_mask/mask'}


def test_deployment_launch_files_build_with_launch_ros():
    pytest.importorskip('launch_ros', reason='launch_ros is not on PyPI; runs on a ROS install')
    for name in ('jetson', 'desktop'):
        module = runpy.run_path(str(REPO / 'launch' / f'{name}.launch.py'))
        assert module['generate_launch_description']().entities
