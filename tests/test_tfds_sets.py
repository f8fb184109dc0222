"""CIFAR-FS, FC100 and CUB through TFDS's mock_data (nothing downloaded): class splits, shapes, episodes."""

import json
import types

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from metajax._src.app.configs import available_configs, load_config
from metajax.data import DataNotFoundError, load_cifar_fs, load_cub, load_fc100, sample_episodes

# CIFAR-100's fine labels in the dataset's order, and its superclasses
FINE = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant
flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel
streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale
willow_tree wolf woman worm""".split()
COARSE = """aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices
household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes
large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals trees vehicles_1
vehicles_2""".split()


class FakeSource(list):
    """A TFDS data source: records by index, and the dataset's features."""

    def __init__(self, records, features):
        super().__init__(records)
        self.dataset_info = types.SimpleNamespace(features=features)


def label(names):
    return tfds.features.ClassLabel(names=names)


def cifar_source(builder, split, **kwargs):
    del builder, kwargs
    per_class = 6 if split == "train" else 2  # 8 images per class once the splits are pooled
    records = [
        {"image": np.full((32, 32, 3), c, np.uint8), "label": c, "coarse_label": c % 20}
        for c in range(100)
        for _ in range(per_class)
    ]
    return FakeSource(records, {"label": label(FINE), "coarse_label": label(COARSE)})


def cub_source(builder, split, **kwargs):
    del builder, kwargs
    records = []
    for c in range(200):
        n = 5 if split == "train" else (4 if c == 7 else 3)  # class 7 has 9 images, the others 8
        for i in range(n):
            image = np.full((40 + c % 7, 50 + i, 3), c % 256, np.uint8)
            records.append({"image": image, "label": c, "bbox": np.array([0.1, 0.2, 0.9, 0.8], np.float32)})
    return FakeSource(records, {"label": label([f"{c + 1:03d}.bird" for c in range(200)])})


@pytest.fixture
def tfds_dir(tmp_path):
    """A data directory with the prepared datasets' info files (the records come from the mock)."""
    for name, version in (("cifar100", "3.0.2"), ("caltech_birds2011", "0.2.0")):
        (tmp_path / name / version).mkdir(parents=True)
        (tmp_path / name / version / "dataset_info.json").write_text("{}")
    return tmp_path


def mocked(fn):
    return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=fn)


def test_cifar_fs_has_the_published_class_split(tfds_dir):
    with mocked(cifar_source):
        parts = load_cifar_fs(tfds_dir)
    assert {s: len(p.character) for s, p in parts.items()} == {"train": 64, "val": 16, "test": 20}
    names = {s: {FINE[i] for i in p.character} for s, p in parts.items()}
    assert names["test"] == {"whale", "poppy", "rose", "sweet_pepper", "telephone", "bed", "table", "wardrobe",
                             "leopard", "plain", "chimpanzee", "fox", "snail", "worm", "baby", "man", "woman",
                             "bicycle", "pickup_truck", "rocket"}  # fmt: skip
    assert {"beaver", "otter", "tractor"} <= names["val"] and not names["train"] & (names["val"] | names["test"])
    train = parts["train"]
    assert train.images.shape == (64, 8, 32, 32, 3) and train.images.dtype == np.uint8
    # each class holds its own images (the fake encodes the label in the pixels)
    assert all((train.images[k] == c).all() for k, c in enumerate(train.character))


def test_fc100_splits_by_superclass(tfds_dir):
    with mocked(cifar_source):
        parts = load_fc100(tfds_dir)
    assert {s: len(p.character) for s, p in parts.items()} == {"train": 60, "val": 20, "test": 20}
    supers = {s: {COARSE[a] for a in p.alphabet} for s, p in parts.items()}
    assert supers["test"] == {"aquatic_mammals", "insects", "medium_mammals", "people"}
    assert supers["val"] == {"large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates",
                             "small_mammals"}  # fmt: skip
    assert len(supers["train"]) == 12 and not supers["train"] & (supers["val"] | supers["test"])


@pytest.mark.parametrize("crop", ["none", "bbox"])
def test_cub_has_the_100_50_50_split_and_resized_images(tfds_dir, crop):
    with mocked(cub_source):
        parts = load_cub(tfds_dir, crop=crop, image_size=84)
    ids = {s: list(p.character) for s, p in parts.items()}
    assert ids["train"] == list(range(0, 200, 2)) and ids["val"] == list(range(1, 200, 4))
    assert ids["test"] == list(range(3, 200, 4))
    assert parts["test"].images.shape == (50, 8, 84, 84, 3)  # class 7's ninth image cut: the smallest count
    assert int(parts["test"].images[1].mean()) == 7  # class 7 is the test split's second class


def test_episodes_are_drawn_end_to_end(tfds_dir):
    with mocked(cifar_source):
        parts = load_cifar_fs(tfds_dir)
    tasks = sample_episodes(jax.random.PRNGKey(0), jax.numpy.asarray(parts["test"].images), 3, 5, 1, 3)
    (xs, ys), (xq, yq) = tasks
    assert xs.shape == (3, 5, 32, 32, 3) and xq.shape == (3, 15, 32, 32, 3)
    # the support and query of a class come from the same CIFAR class (pixels encode it)
    for t in range(3):
        for way in range(5):
            s_val = np.unique(np.asarray(xs[t][np.asarray(ys[t]) == way]))
            q_val = np.unique(np.asarray(xq[t][np.asarray(yq[t]) == way]))
            assert len(s_val) == 1 and set(q_val) == set(s_val)


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"tfds build cifar100 --data_dir DIR"):
        load_cifar_fs(tmp_path)
    with pytest.raises(DataNotFoundError, match="caltech_birds2011"):
        load_cub(tmp_path)
    with pytest.raises(ValueError, match="crop must be one of"):
        load_cub(tmp_path, crop="center")


NEW_CONFIGS = sorted(n for n in available_configs() if n.startswith(("cifar_fs_", "fc100_", "cub_")))
SOURCES = {"cifar_fs": cifar_source, "fc100": cifar_source, "cub": cub_source}


def test_every_new_config_loads_and_builds(tfds_dir):
    from metajax._src.app import experiment

    assert len(NEW_CONFIGS) == 30
    for name in NEW_CONFIGS:
        for smoke in (False, True):
            cfg = load_config(name, smoke=smoke)
            assert cfg.model.name in ("conv4", "resnet12") and cfg.task in SOURCES
        cfg.data.data_dir = str(tfds_dir)
        with mocked(SOURCES[cfg.task]):
            exp = experiment.build(cfg)
        assert exp.learner.name == cfg.algorithm, name


def smoke_train(name, tfds_dir, tmp_path):
    from metajax._src.app import cli

    run = tmp_path / name
    with mocked(SOURCES[name.split("_5w")[0]]):
        rc = cli.main(["train", "--config", name, "--smoke", "--run-dir", str(run), "--data-dir", str(tfds_dir),
                       "--no-progress", "--set", "train.num_steps=4", "--set", "train.eval_every=2"])  # fmt: skip
    assert rc == 0
    final = json.loads((run / "eval_final.json").read_text())
    assert final and all(0.0 <= v["accuracy"] <= 1.0 for v in final.values() if isinstance(v, dict))


# One real smoke run per algorithm and backbone, every data set and both shot counts among them; the other 25
# configs differ from one of these only in data set or shots, and their training step is traced instead.
SMOKE_RUNS = [
    "cifar_fs_5w1s_maml",
    "fc100_5w5s_fomaml",
    "cub_5w1s_anil",
    "fc100_5w1s_mamlpp",
    "cifar_fs_5w1s_maml_resnet12",
]


def test_the_smoke_runs_cover_every_algorithm_backbone_data_set_and_shot_count():
    assert set(SMOKE_RUNS) <= set(NEW_CONFIGS)
    kinds = {n.split("_5w")[1][3:] for n in NEW_CONFIGS}  # maml, fomaml, anil, mamlpp, maml_resnet12
    assert {n.split("_5w")[1][3:] for n in SMOKE_RUNS} == kinds
    assert {n.split("_5w")[0] for n in SMOKE_RUNS} == set(SOURCES)
    assert {n.split("_5w")[1][:2] for n in SMOKE_RUNS} == {"1s", "5s"}


@pytest.mark.slow  # a smoke run compiles training, validation and test programs: ~1-2 minutes each
@pytest.mark.parametrize("name", SMOKE_RUNS)
def test_one_config_per_algorithm_trains_on_mock_data(name, tfds_dir, tmp_path):
    smoke_train(name, tfds_dir, tmp_path)


@pytest.mark.slow  # builds each config on mock data and traces its training step (no compile): seconds each
@pytest.mark.parametrize("name", [n for n in NEW_CONFIGS if n not in SMOKE_RUNS])
def test_every_other_new_config_traces_its_training_step_on_mock_data(name, tfds_dir):
    from conftest import trace_training_step

    cfg = load_config(name, smoke=True)
    cfg.data.data_dir = str(tfds_dir)
    with mocked(SOURCES[cfg.task]):
        metrics = trace_training_step(cfg)
    assert "query_loss" in metrics, sorted(metrics)
