"""What every config shares: the training section, the model defaults and the table variants.

Each `configs/<family>.py` takes this base, writes its own table, and applies the variants named
in its config argument (`--config=configs/v3_large.py:minimalistic,small_image`).
"""

from collections.abc import Callable, Sequence

import ml_collections

from mobilenet_jax.errors import ConfigError

Row = tuple


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Identity, set by each config file: its family ('v3_small'), the variants applied in order
  # (('fashion_mnist',)), and both as one name for logs and results ('v3_small:fashion_mnist').
  config.family = ''
  config.variants = ()
  config.name = ''
  config.seed = 0
  config.init_from = ''           # 'torchvision:PATH' or 'keras:PATH': published weights

  # Data: any TFDS image-classification dataset, or folder:PATH, a folder of class subfolders
  # (mobilenet_jax/data/folders.py; docs/datasets.md).
  config.dataset = 'imagenet2012'
  config.data_dir = ml_collections.config_dict.placeholder(str)     # TFDS data_dir
  config.manual_dir = ml_collections.config_dict.placeholder(str)   # imagenet2012's tar files
  config.fashion_mnist_dir = '/usr/share/datasets/fashion-mnist'    # IDX files (Debian)
  config.download = False         # let TFDS download and prepare a missing dataset
  config.train_split = 'train'
  config.eval_split = 'validation'
  config.folder_eval_fraction = 0.1    # folder:PATH without split folders: held out, per class
  config.folder_skip_bad_files = False  # folder:PATH: leave out non-image files, or stop
  # Also evaluate each image's mirror image and average the logits: reported beside the single
  # view ('raw_flip/top1', results' 'flip_top1'), at twice the evaluation's cost.
  config.eval_flip = False

  config.input = ml_collections.ConfigDict()
  config.input.image_size = 224
  config.input.preprocessing = 'imagenet'   # Inception crop + flip; eval resize + central crop
  config.input.crop_padding = 4             # 'small': pixels of zero padding before the crop
  config.input.crop_fraction = 0.875        # 'imagenet' eval: resize to size / this, central crop
  # Resizes: 'area' | 'bicubic' | 'bilinear' (data/preprocessing.py; docs/input_pipeline.md
  # measures them): the Inception crop's, and the evaluation's. 'imagenet' eval decodes only the
  # central 'window' it keeps, or the 'full' image (torchvision's order: resize, then crop).
  config.input.train_interpolation = 'area'
  config.input.interpolation = 'area'
  config.input.eval_decode = 'window'
  config.input.random_flip = True
  config.input.mean = (0.485 * 255, 0.456 * 255, 0.406 * 255)   # pixels are scaled as
  config.input.std = (0.229 * 255, 0.224 * 255, 0.225 * 255)    # (x - mean) / std, x in [0, 255]
  # Augmentations beyond crop and flip, all off by default (mobilenet_jax/data/augment.py and
  # train/mixing.py): RandAugment's ops per image (0: off), magnitude (paper scale, 10 strongest
  # tuned) and per-op probability; random erasing's probability and area range; Mixup/CutMix on
  # the device per batch (alpha 0: off), the probability of mixing a batch and of CutMix over
  # Mixup when both are on.
  config.input.randaugment_layers = 0
  config.input.randaugment_magnitude = 9.0
  config.input.randaugment_prob = 0.5
  config.input.random_erasing_prob = 0.0
  config.input.random_erasing_area = (0.02, 1 / 3)
  config.input.mixup_alpha = 0.0
  config.input.cutmix_alpha = 0.0
  config.input.mix_prob = 1.0
  config.input.mix_switch_prob = 0.5
  # Examples are mixed with a partner from their group of this many consecutive ones (0: from the
  # whole batch, timm's): a group that divides each device's share keeps mixing on the device.
  config.input.mix_group_size = 8
  config.input.prefetch_batches = 4

  config.model = ml_collections.ConfigDict()
  config.model.name = 'mobilenet'
  config.model.width_multiplier = 1.0
  config.model.blocks = ()
  config.model.expansion_unit = 'channels'
  config.model.scale_stem = True   # False: the stem keeps its width at any width_multiplier
  config.model.head_width = 0      # the 1x1 conv after pooling; 0: none
  config.model.head_activation = 'relu'
  config.model.head_batch_norm = False  # True: that conv has no bias and a BN (V4)
  # 'pool' | 'msfa': V5's multi-scale fusion adapter, whose token map (head_width wide, pooled
  # to msfa_resolution, its FFN expanding msfa_expansion times) is pooled for the classifier.
  config.model.head = 'pool'
  config.model.msfa_resolution = 16
  config.model.msfa_expansion = 2.0
  config.model.num_classes = 1000   # 0: no classifier, the feature (V5: token) map is returned
  config.model.dropout_rate = 0.2
  config.model.bn_momentum = 0.99
  config.model.bn_epsilon = 1e-3     # the norm's epsilon, batch norm's or RMSNorm's
  config.model.norm = 'batch_norm'   # 'batch_norm' | 'rms_norm' (V5: RMSNorm, no statistics)
  config.model.stem_bias = False     # True: the stem's conv has a bias (V5)
  # Batch-norm statistics over groups of this many consecutive examples (0: the global batch);
  # a group that divides each device's share needs no cross-device reduction (TPU recipes: 32-128).
  config.model.bn_group_size = 0
  config.model.se_gate = 'hard_sigmoid'
  config.model.layer_scale_init = 0.0  # >0: layer scale on 'uib' and 'mqa' branches (V4 hybrids)
  config.model.drop_path_rate = 0.0    # stochastic depth of the last block, linear from 0
  config.model.padding = 'symmetric'
  config.model.depthwise_implementation = 'auto'   # 'grouped' | 'shifted' | 'shifted_vjp' | 'ffi'
  config.model.conv_implementation = 'auto'        # 'conv' | 'matmul' | 'im2col'
  config.model.dtype = 'float32'

  # Schedule. `num_train_steps` > 0 overrides `num_epochs`.
  config.batch_size = 1024        # global, split over all devices and hosts
  config.num_epochs = 350.0
  config.num_train_steps = -1
  config.learning_rate = 0.016    # for lr_base_batch_size images; scaled linearly with batch
  config.lr_base_batch_size = 256
  config.schedule = 'exponential'  # 'cosine' | 'exponential' (staircase) | 'constant'
  config.cosine_end = 0.0         # cosine: the final learning rate, as a fraction of the peak
  config.warmup_epochs = 5.0
  config.decay_epochs = 2.0       # exponential: multiply by decay_rate every decay_epochs
  config.decay_rate = 0.973

  # Optimizer and regularisation.
  config.optimizer = 'rmsprop'    # 'rmsprop' (TensorFlow's) | 'sgd' (Nesterov) | 'adamw'
  config.momentum = 0.9
  config.rmsprop_decay = 0.9
  config.epsilon = 0.002
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.weight_decay = 2e-5      # gradient += weight_decay * w (kernels only)
  config.label_smoothing = 0.1
  config.grad_clip_norm = 0.0     # 0: no clipping
  # Fine-tuning: the body's learning rate as a share of the classifier's (optax.multi_transform);
  # 1: one learning rate for all, 0: a frozen body (a linear probe).
  config.body_learning_rate_scale = 1.0
  config.ema_decay = 0.9999       # 0: no EMA of the weights

  # Knowledge distillation (mobilenet_jax/train/distill.py, docs/distillation.md): frozen
  # teachers in eval mode on the student's own augmented batch, their logits averaged. `teachers`
  # is comma-separated, each a RUN_DIR of ours or CONFIG@SOURCE:PATH (published weights and the
  # config they fit); empty: no distillation. loss = (1 - alpha) * CE(labels)
  # + alpha * temperature^2 * KL(teacher || student), both softened by the temperature.
  config.distill = ml_collections.ConfigDict()
  config.distill.teachers = ''
  config.distill.alpha = 0.5        # timm's default weighting (task and distillation alike)
  config.distill.temperature = 1.0  # big_vision's function matching

  # Loop.
  config.log_every_steps = 100
  config.eval_every_steps = 5000  # and at the end
  config.checkpoint_every_steps = 1000  # and at the end
  config.keep_checkpoints = 3
  config.async_checkpoints = True  # write checkpoints in the background while training goes on
  # Several hosts: how often they agree whether any was signalled to stop (a collective that
  # waits for the step in flight, so not every step). A stop lands within this many steps.
  config.preemption_check_every_steps = 10
  return config


def fashion_mnist(config: ml_collections.ConfigDict, num_strides: int = 1) -> None:
  """Fashion-MNIST at 28 px on a 2-core CPU, from the offline Debian files (docs/fashion_mnist.md).

  Only the stem's stride is removed (total stride 16: 28 px ends at 2x2), a quarter of the
  compute of `small_image` at stride 8, so that 21 epochs take 20-25 minutes of training on the
  faster 2-core machines of this kind (V4 Conv-S on an Intel AVX-512 one: 93.26% and 93.50% for
  seeds 0 and 1 at 21 epochs; 19 gave 93.30% and 92.94%, 17 92.81-93.15% over seeds and data
  orders, 16 92.77-93.28%).
  Pad-and-crop + flip and nothing more (a family's ImageNet RandAugment or Mixup is turned off),
  AdamW with a short cosine schedule (RMSProp's long exponential decay is tuned for hundreds of
  ImageNet epochs), and batch-norm momentum 0.9 so that the running statistics settle within a
  few hundred steps.
  Gradients clipped to global norm 2: unclipped, a few steps' norms reached 100-280 (against
  0.6-1.3 on average) and knocked the loss back, which cost one seed 1 point at 16 epochs
  (V4 Conv-S seed 1: 92.06% unclipped, 93.02% clipped; seed 0: 93.14%, 93.28%).
  """
  small_image(config, num_strides=num_strides)
  config.model.bn_momentum = 0.9
  config.dataset = 'fashion_mnist'
  config.eval_split = 'test'
  config.model.num_classes = 10
  config.input.image_size = 28
  config.input.preprocessing = 'small'
  config.input.crop_padding = 2
  config.input.mean = (0.286 * 255,) * 3
  config.input.std = (0.353 * 255,) * 3
  config.input.randaugment_layers = 0
  config.input.random_erasing_prob = 0.0
  config.input.mixup_alpha = 0.0
  config.input.cutmix_alpha = 0.0
  config.batch_size = 128         # 256 is no faster an image on two cores
  config.num_epochs = 21.0
  config.grad_clip_norm = 2.0
  config.optimizer = 'adamw'
  config.learning_rate = 0.004
  config.lr_base_batch_size = 128
  config.schedule = 'cosine'
  config.warmup_epochs = 0.5
  config.weight_decay = 0.05
  config.epsilon = 1e-8
  config.label_smoothing = 0.1
  config.ema_decay = 0.999
  config.log_every_steps = 50
  config.eval_every_steps = 2500
  config.checkpoint_every_steps = 500


def fashion_mnist_long(config: ml_collections.ConfigDict) -> None:
  """`fashion_mnist` at total stride 8 (the first two strides removed: 28 px ends at 4x4, 3.3x the
  multiply-adds) for 40 epochs, gradients clipped to norm 2 as in `fashion_mnist` (V4 Conv-S: 94.86%
  after 115 min of training on the slower 2-core machines, 94.79% without RandAugment, 94.78% with
  SGD, 94.62% 1.25x wider for the 27 epochs 2 hours then buy; unclipped, 50 epochs gave 94.92% in 94
  min on a faster one and 94.71% with seed 1, 60 epochs 94.64%, half the images erased 94.76%;
  V3-Large for 27 epochs 94.78% in 109 min: the recipe levels off near 94.6-94.9%, 95% not reached),
  with light RandAugment (2 ops at magnitude 5, each with probability 0.5: on grayscale images the
  colour op changes nothing) and random erasing of a quarter of the images, the augmentation that
  took wide ResNets on Fashion-MNIST from 95.9% to 96.3% (Zhong et al. 2020). At stride 16 the same
  augmentation for 100 epochs underfit (V4 Conv-S: 94.12% after 93 minutes, train accuracy no
  higher): the 2x2 maps of the last stages are what held it, but not alone: the stem's and the last
  stride removed instead (4x4 last maps at 25.1M multiply-adds, 60 clipped epochs in 97 min) gave
  93.94%, so the early 28x28 layers matter too. No Mixup/CutMix: CutMix in place of the erasing
  (alpha 1 on half the batches) trailed the recipe at every evaluation and ended at 94.38%.
  """
  fashion_mnist(config, num_strides=2)
  config.num_epochs = 40.0  # 50 unclipped epochs were no better and take ~145 min here
  config.input.randaugment_layers = 2
  config.input.randaugment_magnitude = 5.0
  config.input.randaugment_prob = 0.5
  config.input.random_erasing_prob = 0.25
  config.eval_every_steps = 2340  # every 5 epochs of 468 steps


def modern(config: ml_collections.ConfigDict) -> None:
  """A modern ImageNet recipe for V1-V3, of the family the MobileNetV4 paper retrained them with
  (V1 74.0%, V2 73.4%, V3-Large 75.5% top-1, against the papers' 70.6/72.0/75.2%). The paper
  does not print those runs' hyperparameters; this is Tab. 10's recipe at the scale of Conv-M's
  row (the paper's 500-epoch models) with Conv-S's augmentation strength (RandAugment 2 ops at
  magnitude 9, probability 0.5; no Mixup), as for models of Conv-S's size: AdamW (0.9, 0.999,
  1e-7), learning rate 0.004 at batch 4096, 5 warmup epochs, cosine to 0 over 500 epochs,
  weight decay 0.1, label smoothing 0.1, dropout 0.2, EMA 0.9999. Not run here (no ImageNet).
  """
  v4_paper_recipe(config, batch_size=4096, learning_rate=0.004, num_epochs=500,
                  warmup_epochs=5, weight_decay=0.1, adam_b1=0.9, epsilon=1e-7,
                  dropout_rate=0.2, drop_path_rate=0.0, randaugment=(0.5, 2, 9.0),
                  ema_decay=0.9999)


def v3_paper_recipe(config: ml_collections.ConfigDict) -> None:
  """ImageNet recipe of the V3 paper (Section 6.1): RMSProp with momentum 0.9, learning rate 0.1
  at batch 4096 decayed x0.01 every 3 epochs (as printed; torchvision's reproduction uses x0.973
  every 2 epochs from 0.064 at batch 1024), L2 1e-5, dropout 0.2, weight EMA 0.9999, BN
  momentum 0.99."""
  config.batch_size = 4096
  config.learning_rate = 0.1
  config.lr_base_batch_size = 4096
  config.schedule = 'exponential'
  config.warmup_epochs = 0.0
  config.decay_epochs = 3.0
  config.decay_rate = 0.01
  config.weight_decay = 2e-5  # TF's L2 of 1e-5 on the loss
  config.label_smoothing = 0.0
  config.ema_decay = 0.9999


def v2_paper_recipe(config: ml_collections.ConfigDict) -> None:
  """ImageNet recipe of the V2 paper (Section 6.1): RMSProp (decay 0.9, momentum 0.9), weight
  decay 4e-5, learning rate 0.045 at batch 96 decayed x0.98 every epoch; the released checkpoints
  add label smoothing 0.1 and a weight EMA of 0.9999."""
  config.batch_size = 96
  config.learning_rate = 0.045
  config.lr_base_batch_size = 96
  config.schedule = 'exponential'
  config.warmup_epochs = 0.0
  config.decay_epochs = 1.0
  config.decay_rate = 0.98
  config.weight_decay = 8e-5  # TF's L2 of 4e-5 on the loss


def v4_paper_recipe(config: ml_collections.ConfigDict, *, batch_size: int, learning_rate: float,
                    num_epochs: float, warmup_epochs: float, weight_decay: float,
                    adam_b1: float, epsilon: float, dropout_rate: float,
                    drop_path_rate: float, randaugment: tuple[float, int, float],
                    mix_prob: float = 0.0, ema_decay: float = 0.0,
                    cosine_end: float = 0.0) -> None:
  """ImageNet recipe of the V4 paper (App. C, Tab. 10): AdamW (beta2 0.999) with linear warmup
  and cosine decay, label smoothing 0.1, Inception crop + flip, RandAugment (`randaugment`:
  probability, layers, magnitude), and for the large models Mixup (alpha 0.8) / CutMix (alpha
  1.0) on a `mix_prob` share of the batches, switching with probability 0.5; the per-model
  numbers are the arguments."""
  config.batch_size = batch_size
  config.learning_rate = learning_rate
  config.lr_base_batch_size = batch_size
  config.num_epochs = num_epochs
  config.optimizer = 'adamw'
  config.adam_b1 = adam_b1
  config.adam_b2 = 0.999
  config.epsilon = epsilon
  config.weight_decay = weight_decay
  config.schedule = 'cosine'
  config.cosine_end = cosine_end
  config.warmup_epochs = warmup_epochs
  config.label_smoothing = 0.1
  config.ema_decay = ema_decay
  config.model.dropout_rate = dropout_rate
  config.model.drop_path_rate = drop_path_rate
  (config.input.randaugment_prob, config.input.randaugment_layers,
   config.input.randaugment_magnitude) = randaugment
  if mix_prob:
    config.input.mixup_alpha = 0.8
    config.input.cutmix_alpha = 1.0
    config.input.mix_prob = mix_prob
    config.input.mix_switch_prob = 0.5


def v4_model(config: ml_collections.ConfigDict, *, activation: str = 'relu',
             layer_scale_init: float = 0.0) -> None:
  """What every MobileNetV4 shares: expansion ratios, the stem kept at its width below width 1
  (timm's `fix_stem`), the head (the table's 1x1 conv to 960, pooling, a 1x1 conv to 1280
  without bias + BN + act), and TF Model Garden's batch norm (momentum 0.997, epsilon 1e-3)."""
  config.model.expansion_unit = 'ratio'
  config.model.scale_stem = False
  config.model.head_width = 1280
  config.model.head_activation = activation
  config.model.head_batch_norm = True
  config.model.layer_scale_init = layer_scale_init
  config.model.bn_momentum = 0.997
  config.model.bn_epsilon = 1e-3


def v5_model(config: ml_collections.ConfigDict) -> None:
  """What both MobileNetV5s share (timm's `_gen_mobilenet_v5`): expansion ratios, RMSNorm
  (epsilon 1e-6, timm's) in place of batch norm, GELU in its tanh form, a stem conv with bias
  (kept at its width below width 1), layer scale 1e-5 on every UIB and MQA branch, and the MSFA
  head: a 2048-wide token map at 16x16, pooled for the classifier without a head conv."""
  config.model.expansion_unit = 'ratio'
  config.model.scale_stem = False
  config.model.norm = 'rms_norm'
  config.model.bn_epsilon = 1e-6
  config.model.stem_bias = True
  config.model.layer_scale_init = 1e-5
  config.model.head = 'msfa'
  config.model.head_width = 2048
  config.model.head_activation = 'gelu_tanh'
  config.model.msfa_resolution = 16
  config.model.msfa_expansion = 2.0
  config.model.dropout_rate = 0.0


def minimalistic(config: ml_collections.ConfigDict) -> None:
  """MobileNetV3 'minimalistic': 3x3 kernels, ReLU everywhere, no squeeze-and-excite."""
  config.model.blocks = tuple(
      (block, 3 if block == 'ir' else kernel, expansion, out, False, 'relu', stride, repeats)
      for block, kernel, expansion, out, _, _, stride, repeats in config.model.blocks)
  config.model.head_activation = 'relu'


def small_image(config: ml_collections.ConfigDict, num_strides: int = 2) -> None:
  """For 28-32 px inputs: the first two stride-2 rows get stride 1 (total stride 32 -> 8).

  At stride 32 a 32 px image ends as a 1x1 feature map, so the last blocks see no spatial
  context and their 5x5 kernels see padding only; at stride 8 a 28-32 px image ends at 4x4, the
  share of spatial context a 224 px image has at 7x7. The earliest strides are the ones removed,
  as CIFAR adaptations of MobileNet do, so that the early high-resolution layers keep the detail
  of a small image; the cost is higher MAdds than a stride-32 net at the same size.
  """
  rows = []
  for block, kernel, expansion, out, se, activation, stride, repeats in config.model.blocks:
    if stride == 2 and num_strides > 0:
      stride, num_strides = 1, num_strides - 1
    rows.append((block, kernel, expansion, out, se, activation, stride, repeats))
  config.model.blocks = tuple(rows)
  config.input.image_size = 32


VARIANTS: dict[str, Callable[[ml_collections.ConfigDict], None]] = {
    'minimalistic': minimalistic,
    'small_image': small_image,
    'fashion_mnist': fashion_mnist,
    'fashion_mnist_long': fashion_mnist_long,
    'modern': modern,
}


def apply_variants(config: ml_collections.ConfigDict, family: str, arg: str | None,
                   allowed: Sequence[str]) -> ml_collections.ConfigDict:
  """Applies the comma-separated variants of the config argument, in the order given."""
  names = [name for name in (arg or '').split(',') if name]
  for name in names:
    if name not in allowed:
      raise ConfigError(f'config variant {name!r} is not allowed for {family}; choose from: '
                        + ', '.join(allowed))
    VARIANTS[name](config)
  config.family = family
  config.variants = tuple(names)
  config.name = family + (':' + ','.join(names) if names else '')
  return config
