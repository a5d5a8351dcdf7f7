"""The memory benchmark's accounting on fake tensors (benchmarks/tracked_memory.py) against a direct count of
the tensors a small training step holds: weights, gradients, optimizer state, what autograd saved."""
import pytest
import torch
from torch.utils.checkpoint import checkpoint

from nested_attention.benchmarks.tracked_memory import SCALAR, LiveBytes, fake, tensor_bytes


class Net(torch.nn.Module):
    def __init__(self, checkpointed: bool = False):
        super().__init__()
        self.a, self.b, self.c = torch.nn.Linear(64, 256), torch.nn.Linear(256, 256), torch.nn.Linear(256, 8)
        self.b2 = torch.nn.Linear(256, 256)
        self.checkpointed = checkpointed

    def middle(self, h):
        return self.b2(torch.relu(self.b(torch.relu(h))))

    def forward(self, x):
        h = self.a(x)
        h = checkpoint(self.middle, h, use_reentrant=False) if self.checkpointed else self.middle(h)
        return self.c(h)


def forward_counted(net, x):
    """loss, and the tensors autograd saved for the backward pass (counted by a saved-tensors hook)."""
    saved = []

    def pack(t):  # detached: a saved output kept with its grad_fn would hold its own graph alive
        saved.append(t.detach())
        return saved[-1]

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = net(x).square().mean()
    return loss, saved


@pytest.mark.parametrize("as_fake", [True, False])
def test_live_bytes_are_weights_saved_activations_gradients_and_optimizer_state(as_fake):
    live = LiveBytes()
    context = fake(live) if as_fake else live
    with context:
        net = Net()
        optimizer = torch.optim.AdamW(net.parameters(), fused=True)
        x = torch.randn(32, 64)
        weights = tensor_bytes(net.parameters())
        assert live.current == weights + tensor_bytes([x])

        loss, saved = forward_counted(net, x)
        # the net's output and its square are saved; the loss is the only other tensor alive
        assert live.current == tensor_bytes([*net.parameters(), x, *saved, loss])
        assert tensor_bytes(saved) > 32 * 256 * 4  # activations [32, 256] float32 were kept
        peak_forward = live.peak

        loss.backward()
        del loss, saved
        grads = [p.grad for p in net.parameters()]
        assert live.current == weights + tensor_bytes([x, *grads])  # the graph and its saved tensors are gone
        optimizer.step()
        state = [v for s in optimizer.state.values() for v in s.values()]
        assert live.current == weights + tensor_bytes([x, *grads, *state])
        assert tensor_bytes(state) >= 2 * weights  # two float32 moments per parameter
        assert live.peak >= peak_forward


@pytest.mark.parametrize("as_fake", [True, False])
def test_checkpointing_keeps_only_the_inputs_of_the_checkpointed_region(as_fake):
    live = LiveBytes()
    with fake(live) if as_fake else live:
        x = torch.randn(32, 64)
        plain, checkpointed = Net(), Net(checkpointed=True)
        before = live.current
        loss, _ = forward_counted(plain, x)
        held_plain = live.current - before
        del loss
        loss, _ = forward_counted(checkpointed, x)
        held_checkpointed = live.current - before
    # without: both relus' outputs (saved by the relus and the linears after them) and the block's output;
    # with: the block's input and output only, one [32, 256] float32 activation less
    assert held_plain - held_checkpointed == 32 * 256 * 4


def test_peak_sees_a_temporary_and_current_drops_when_it_dies():
    live = LiveBytes()
    with fake(live):
        keep = torch.zeros(1000)
        live.reset_peak()
        temporary = torch.empty(250, dtype=torch.float64)
        view = temporary[10:]  # a view: no new storage
        assert live.current == 4000 + 2000
        del temporary, view
        assert live.current == 4000
        assert live.peak == 6000
        assert keep.shape == (1000,)


def test_fake_tensors_of_known_values_answer_value_questions_and_unknown_ones_a_placeholder():
    live = LiveBytes()
    with fake(live):
        mask = torch.tensor([[0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=torch.bool)
        rows = mask.any(-1).nonzero().squeeze(1)  # from known values: the real answer, real shape
        assert rows.shape == (2,)
        assert (~mask.any(-1)).nonzero().shape == (1, 1)
        assert int(rows.sum()) == 2  # rows 0 and 2
        big = torch.randn(1 << 17)  # too large to keep a value: unknown
        assert float(big.sum()) == SCALAR
        assert bool(torch.isfinite(big.mean()))


def test_cuda_autocast_norms_run_norms_in_float32_under_autocast_only():
    from nested_attention.benchmarks.tracked_memory import cuda_autocast_norms

    x, w = torch.randn(2, 8, 4, 4, dtype=torch.bfloat16), torch.ones(8, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.nn.GroupNorm(4, 8).to(torch.bfloat16)(x).dtype == torch.bfloat16  # the CPU's policy
        with cuda_autocast_norms():
            assert torch.nn.GroupNorm(4, 8).to(torch.bfloat16)(x).dtype == torch.float32  # CUDA's
            assert torch.nn.functional.layer_norm(x, (4,), w[:4], w[:4]).dtype == torch.float32
    with cuda_autocast_norms():
        assert torch.nn.functional.layer_norm(x, (4,), w[:4], w[:4]).dtype == torch.bfloat16  # autocast off
    assert torch.nn.functional.group_norm.__module__ == "torch.nn.functional"  # put back


def test_the_trainers_step_on_fake_tensors_holds_its_encoder_gradients_and_optimizer_state(
        training, sdxl_models, helpers, tiny_models, tmp_path):
    """The benchmark's way (the real session and optimizer step, fake tensors; here the tiny SDXL UNet stays real
    and uncounted): what lives after a step is the encoder's weights, gradients and optimizer state, counted
    tensor by tensor; checkpointing lowers the step's peak."""
    import gc

    from nested_attention.training.loop import optimizer_step
    from nested_attention.training.session import open_session
    from nested_attention.training.step import Denoiser

    data = helpers.make_data(tmp_path / "data", {"a": 2, "b": 2})
    config = helpers.tiny_config(tiny_models, data, tmp_path / "out", drop_text=0.0, drop_subject=0.0,
                                 drop_both=0.0, precision="bf16", batch_size=2)
    warm = open_session(config, models=sdxl_models)
    for step in range(2):  # real steps: the features of steps 0 and 1 in the cache's memory (the host's encoders
        optimizer_step(warm, step)  # on fake tensors are slow, and fake tensors cannot be written to the cache)
    peaks = {}
    for checkpointing in (False, True):
        live = LiveBytes()
        with fake(live):
            session = open_session(config, models=sdxl_models)
            session.store = warm.store
            session.denoiser = Denoiser(sdxl_models.patcher, session.method.rule, checkpointing)
            optimizer_step(session, 0)
            gc.collect()
            before = live.current
            live.reset_peak()
            optimizer_step(session, 1)
            gc.collect()
            state = [v for s in session.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
            held = tensor_bytes([*session.encoder.parameters(), *(p.grad for p in session.parameters), *state])
            assert all(isinstance(p, torch._subclasses.fake_tensor.FakeTensor) for p in session.encoder.parameters())
            assert live.current == before  # a step leaves what the previous one left
            assert 0 <= live.current - held < 64 * 1024, (live.current, held)  # little beyond the three
            peaks[checkpointing] = live.peak - before
            del session
    assert 0 < peaks[True] < peaks[False], peaks  # activations show, fewer with checkpointing
