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
  return profiling.profile_train_step(config, batch=16, steps=2)  # 2 a device


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
