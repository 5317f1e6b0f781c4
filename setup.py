"""ament_python build of seg_perception (colcon on Humble / Jazzy, or pip in a venv)."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'seg_perception'


def tree(src: str, dest_root: str) -> list[tuple[str, list[str]]]:
    """Lists (install dir, files) pairs for every file under `src`, keeping sub-folders."""
    pairs: dict[str, list[str]] = {}
    for path in sorted(glob(os.path.join(src, '**', '*'), recursive=True)):
        if os.path.isfile(path):
            rel_dir = os.path.relpath(os.path.dirname(path), src)
            dest = os.path.normpath(os.path.join(dest_root, src, rel_dir))
            pairs.setdefault(dest, []).append(path)
    return sorted(pairs.items())


share = os.path.join('share', PACKAGE)

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'training', 'training.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        (share, ['package.xml']),
        (os.path.join(share, 'launch'), glob('launch/*.launch.py')),
        *tree('config', share),
        *tree('models', share),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='seg_perception maintainers',
    maintainer_email='dev@seg-perception.local',
    description='Lightweight and binary semantic segmentation nodes for ROS 2.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'segmenter_node = seg_perception.ros.segmenter_node:main',
            'complexity = seg_perception.tools.complexity:main',
            'bench = seg_perception.tools.bench:main',
            'export_model = seg_perception.tools.export_model:main',
            'build_engine = seg_perception.tools.build_engine:main',
            'make_bag = seg_perception.tools.make_bag:main',
            'bag_eval = seg_perception.tools.bag_eval:main',
        ],
    },
)
