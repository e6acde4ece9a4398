"""The op profile: instructions classed from the compiled HLO, self times from a real trace."""

import types

import pytest

from configs import v3_small
from mobilenet_jax.tools import profiling

HLO = '''HloModule jit_train_step, entry_computation_layout={()}
ENTRY %main {
  %multiply_add_fusion.3 = f32[8,16,16,72]{3,2,1,0} fusion(%a, %b), kind=kLoop, calls=%f.3, metadata={op_name="jit(train_step)/jvp(MobileNet)/ir_1/depthwise/conv/mul" stack_frame_id=1}
  %reduce_fusion.4 = f32[3,3,1,72]{3,2,1,0} fusion(%a, %b), kind=kLoop, calls=%f.4, metadata={op_name="jit(train_step)/transpose(jvp(MobileNet))/ir_1/depthwise/conv/reduce_sum"}
  %custom-call.5 = f32[8,32,32,72]{3,2,1,0} custom-call(%a, %b), custom_call_target="mobilenet_jax_depthwise_input_grad", metadata={op_name="jit(train_step)/transpose(jvp(MobileNet))/uib_5/start_depthwise/conv/ffi_call"}
  %ynn_fusion.6 = f32[8,16,16,24]{3,2,1,0} fusion(%a, %b), kind=kCustom, calls=%f.6, metadata={op_name="jit(train_step)/transpose(jvp(MobileNet))/ir_1/project/conv/dot_general"}
  %add_fusion.7 = f32[72]{0} fusion(%a), kind=kLoop, calls=%f.7, metadata={op_name="jit(train_step)/jvp(MobileNet)/ir_1/depthwise/bn/reduce_sum"}
  %wrapped_max.8 = f32[8,16,16,72]{3,2,1,0} fusion(%a), kind=kLoop, calls=%f.8, metadata={op_name="jit(train_step)/jvp(MobileNet)/ir_1/expand/jit(relu)/max"}
  %pad_slice_fusion.9 = f32[8,18,18,72]{3,2,1,0} fusion(%a), kind=kLoop, calls=%f.9, metadata={op_name="jit(train_step)/jvp(MobileNet)/ir_1/depthwise/conv/pad"}
  %wrapped_add.10 = f32[1024,10]{1,0} fusion(%a, %b), kind=kLoop, calls=%f.10, metadata={op_name="jit(train_step)/add"}
  %all-reduce.12 = (f32[72]{0}, f32[3,3,1,72]{3,2,1,0}) all-reduce(%a, %b), replica_groups={}, to_apply=%sum
  ROOT %tuple.11 = (f32[2]{0}) tuple(%a)
}
'''

EXPECTED = {
    'multiply_add_fusion.3': 'depthwise forward',
    'reduce_fusion.4': 'depthwise kernel gradient',
    'custom-call.5': 'depthwise input gradient',
    'ynn_fusion.6': 'matmuls and convs backward',
    'add_fusion.7': 'batch norm forward',
    'wrapped_max.8': 'activations',
    'pad_slice_fusion.9': 'pads, copies, transposes',
    'wrapped_add.10': 'optimizer, EMA and loss',
    'all-reduce.12': 'collectives across devices',
}


def test_instructions_are_classed_by_path_transform_shape_and_name():
  instructions = profiling.parse_hlo(HLO)
  assert instructions['reduce_fusion.4'].shape == (3, 3, 1, 72)
  assert instructions['tuple.11'].shape == ()
  assert instructions['custom-call.5'].target == 'mobilenet_jax_depthwise_input_grad'
  assert {name: profiling.classify(instructions[name], batch=8) for name in EXPECTED} == EXPECTED


def _event(name, start, duration):
  return types.SimpleNamespace(stats=[('hlo_op', name), ('hlo_module', 'm')], start_ns=start,
                               duration_ns=duration, end_ns=start + duration)


def test_self_times_take_nested_ops_out_of_their_enclosing_op():
  events = [_event('while.1', 0, 100), _event('body.2', 10, 30), _event('body.3', 50, 20),
            _event('after.4', 100, 5), types.SimpleNamespace(stats=[], start_ns=0,
                                                             duration_ns=500, end_ns=500)]
  assert profiling.self_times(events) == {'while.1': 50, 'body.2': 30, 'body.3': 20,
                                          'after.4': 5}


@pytest.fixture(scope='module')
def profiled():
  config = v3_small.get_config()
  config.input.image_size = 32
  config.model.width_multiplier = 0.25
  return profiling.profile_step(config, 'train', batch=16, steps=2)  # 2 a device


# Profiling a real step costs the suite more than a minute; the classing and the self times
# that it sums are the tests above, on fixed traces.
@pytest.mark.slow
def test_a_real_step_is_split_into_every_kind_of_op(profiled):
  classes = profiled['classes_ms']
  assert set(classes) == set(profiling.CLASSES)
  for name in ('depthwise forward', 'depthwise input gradient', 'depthwise kernel gradient',
               'matmuls and convs forward', 'matmuls and convs backward', 'batch norm forward',
               'batch norm backward', 'activations', 'optimizer, EMA and loss'):
    assert classes[name] > 0, name
  assert profiled['op_ms_per_step'] == pytest.approx(sum(classes.values()))
  # Little is left unclassed: the classes name what the step does.
  assert classes['other'] < 0.25 * profiled['op_ms_per_step']
  slowest = [row['ms'] for row in profiled['slowest']]
  assert slowest == sorted(slowest, reverse=True) and slowest[0] > 0


def _torch_chain(*events):
  """Profiler events, innermost first: (name, input shapes) pairs."""
  return [types.SimpleNamespace(name=name, input_shapes=shapes) for name, shapes in events]


TORCH_EXPECTED = [
    (_torch_chain(('aten::mkldnn_convolution', [[8, 72, 16, 16], [72, 1, 3, 3], []]),
                  ('aten::conv2d', [[8, 72, 16, 16], [72, 1, 3, 3], []])), 'depthwise forward'),
    (_torch_chain(('aten::convolution_backward',
                   [[8, 72, 16, 16], [8, 72, 16, 16], [72, 1, 5, 5], []]),
                  ('ConvolutionBackward0', []),
                  ('autograd::engine::evaluate_function: ConvolutionBackward0', [])),
     'depthwise backward'),
    (_torch_chain(('aten::convolution_backward',
                   [[8, 24, 16, 16], [8, 72, 16, 16], [24, 72, 1, 1], []]),
                  ('autograd::engine::evaluate_function: ConvolutionBackward0', [])),
     'matmuls and convs backward'),
    (_torch_chain(('aten::native_batch_norm', []), ('aten::batch_norm', [])),
     'batch norm forward'),
    (_torch_chain(('aten::sum', []),
                  ('autograd::engine::evaluate_function: NativeBatchNormBackward0', [])),
     'batch norm backward'),
    (_torch_chain(('aten::hardswish_backward', []),
                  ('autograd::engine::evaluate_function: HardswishBackward0', [])), 'activations'),
    (_torch_chain(('aten::mm', []),
                  ('autograd::engine::evaluate_function: AddmmBackward0', [])),
     'matmuls and convs backward'),
    (_torch_chain(('aten::addmm', []), ('aten::linear', [])), 'matmuls and convs forward'),
    (_torch_chain(('aten::_foreach_mul_', []), ('Optimizer.step#AdamW.step', [])),
     'optimizer, EMA and loss'),
    (_torch_chain(('aten::copy_', []), ('aten::contiguous', [])), 'pads, copies, transposes'),
    (_torch_chain(('aten::mul', [])), 'other'),
]


def test_pytorch_ops_are_classed_like_ours():
  assert [profiling.classify_torch(chain) for chain, _ in TORCH_EXPECTED] == [
      expected for _, expected in TORCH_EXPECTED]


# PyTorch's real step beside ours: slow as the test above (its classing is the test before).
@pytest.mark.slow
def test_pytorch_profile_sits_beside_ours_in_milliseconds_of_each_step(profiled):
  config = v3_small.get_config()  # full width: torchvision's narrower V3 is another network
  config.input.image_size = 32
  theirs = profiling.profile_torch_step(config, 'train', batch=8, steps=2)
  classes = theirs['classes_ms']
  for name in ('depthwise forward', 'depthwise backward', 'matmuls and convs forward',
               'matmuls and convs backward', 'batch norm forward', 'batch norm backward',
               'activations', 'optimizer, EMA and loss'):
    assert classes[name] > 0, name
  assert classes['other'] < 0.35 * theirs['op_ms_per_step']
  for result in (profiled, theirs):
    in_step = profiling.in_step_ms(result)
    assert list(in_step) == list(profiling.COMPARED_CLASSES)
    assert sum(in_step.values()) == pytest.approx(result['untraced_step_ms'])
