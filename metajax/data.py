"""Task data: sinusoid regression sampled on the device, and few-shot episodes from Omniglot and Mini-ImageNet.

Sinusoid (Finn, Abbeel & Levine 2017, section 5.1): :func:`sinusoid_tasks` draws a batch of tasks in one call;
:func:`sinusoid_task_params` and :func:`sinusoid_tasks_from_params` split the draw, :data:`MAML_SINUSOID` is
the paper's distribution.

Few-shot classification: :func:`load_omniglot` (TFDS ``omniglot`` 3.0.0 read offline with
``tfds.data_source``, or the original zips; the splits of Santoro et al. 2016 / Finn et al. 2017 and of
Vinyals et al. 2016), :func:`load_miniimagenet` (user-supplied files; Ravi & Larochelle 2017 split),
:func:`load_cifar_fs` (Bertinetto et al. 2019) and :func:`load_fc100` (Oreshkin et al. 2018) from TFDS
``cifar100``, and :func:`load_cub` (CUB-200-2011 from TFDS ``caltech_birds2011``, the class split of Chen et al.
2019) return class-image arrays per split; :func:`sample_episodes` draws N-way K-shot episodes from them on the device.
:func:`load_tieredimagenet` (Ren et al. 2018; user-supplied files) memory-maps its splits on the host as
:class:`RaggedClassImages` (classes of different sizes); :func:`host_episodes` draws episodes there and
:func:`tiered_episode_sampler` does so from inside ``jit``.

Nothing is downloaded at run time. The data directory is the ``data_dir`` argument, else
``$METAJAX_DATA_DIR`` (Omniglot) / ``$METAJAX_MINIIMAGENET_DIR`` (Mini-ImageNet) /
``$METAJAX_TIEREDIMAGENET_DIR`` (tiered-ImageNet), else
``~/tensorflow_datasets``; a missing one raises :class:`DataNotFoundError` saying what to get and where to put
it, and a damaged file raises :class:`DataError` naming it. :func:`prepare_omniglot` builds the TFDS copy
from local zips (needs TensorFlow: the ``prepare`` extra).
"""

from metajax._src.data.episodes import episode_spec, sample_episode, sample_episodes
from metajax._src.data.miniimagenet import load_miniimagenet
from metajax._src.data.omniglot import (
    ClassImages,
    DataError,
    DataNotFoundError,
    load_omniglot,
)
from metajax._src.data.omniglot import (
    load_characters as load_omniglot_characters,
)
from metajax._src.data.omniglot import (
    resolve_data_dir as omniglot_data_dir,
)
from metajax._src.data.prepare import prepare_omniglot
from metajax._src.data.sinusoid import (
    MAML_SINUSOID,
    SinusoidConfig,
    SinusoidTaskParams,
)
from metajax._src.data.sinusoid import (
    sample_task_params as sinusoid_task_params,
)
from metajax._src.data.sinusoid import (
    sample_tasks as sinusoid_tasks,
)
from metajax._src.data.sinusoid import (
    task_spec as sinusoid_task_spec,
)
from metajax._src.data.sinusoid import (
    tasks_from_params as sinusoid_tasks_from_params,
)
from metajax._src.data.tfds_sets import (
    CIFAR_FS_CLASSES,
    FC100_SUPERCLASSES,
    cub_split,
    load_cifar_fs,
    load_cub,
    load_fc100,
)
from metajax._src.data.tieredimagenet import (
    RaggedClassImages,
    host_episodes,
    load_tieredimagenet,
    tiered_classification_sampler,
    tiered_episode_sampler,
)

__all__ = [
    "CIFAR_FS_CLASSES",
    "ClassImages",
    "DataError",
    "DataNotFoundError",
    "FC100_SUPERCLASSES",
    "MAML_SINUSOID",
    "RaggedClassImages",
    "SinusoidConfig",
    "SinusoidTaskParams",
    "cub_split",
    "episode_spec",
    "host_episodes",
    "load_cifar_fs",
    "load_cub",
    "load_fc100",
    "load_miniimagenet",
    "load_omniglot",
    "load_omniglot_characters",
    "load_tieredimagenet",
    "omniglot_data_dir",
    "prepare_omniglot",
    "sample_episode",
    "sample_episodes",
    "sinusoid_task_params",
    "sinusoid_task_spec",
    "sinusoid_tasks",
    "sinusoid_tasks_from_params",
    "tiered_classification_sampler",
    "tiered_episode_sampler",
]
