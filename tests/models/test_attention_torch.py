"""A hand-written PyTorch BiLSTM-with-attention classifier imported by the documented mapping
(docs/guide/attention.md): forward and input gradient equal PyTorch's in float64, unpadded and for a padded
sequence (PyTorch packing the sequence and masking the softmax, lrpjax with a mask)."""

import jax
import numpy as np
import pytest

import lrpjax
from lrpjax import interop
from lrpjax.models import AttentionPool, Dense, Sequential

torch = pytest.importorskip("torch")

E, H, A, C, T = 4, 3, 5, 2, 5


class BiLSTMAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.LSTM(E, H, bidirectional=True, batch_first=True)
        self.score = torch.nn.Linear(2 * H, A)
        self.v = torch.nn.Linear(A, 1, bias=False)
        self.out = torch.nn.Linear(2 * H, C)

    def forward(self, x, length):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([length]), batch_first=True)
        h, _ = torch.nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True,
                                                      total_length=x.shape[1])
        e = self.v(torch.tanh(self.score(h))).squeeze(-1)
        e = e.masked_fill(torch.arange(x.shape[1])[None] >= length, float("-inf"))
        alpha = torch.softmax(e, dim=1)
        return self.out((alpha.unsqueeze(-1) * h).sum(dim=1))


@pytest.fixture(scope="module")
def imported():
    torch.manual_seed(0)
    net = BiLSTMAttention().double().eval()
    rnn_model, rnn_params = interop.from_torch(net.rnn, sequence_output=True)
    model = Sequential(rnn_model.layers + (AttentionPool("additive", units=A), Dense(C)))
    weight = lambda p: p.detach().numpy()   # noqa: E731
    params = {**rnn_params,
              "attention_0": {"W": weight(net.score.weight).T, "b": weight(net.score.bias),
                              "v": weight(net.v.weight).T},
              "out": {"W": weight(net.out.weight).T, "b": weight(net.out.bias)}}
    return net, model, params


@pytest.mark.parametrize("length", [T, 3])
def test_forward_and_input_gradient_equal_pytorch(imported, length):
    net, model, params = imported
    x = np.random.default_rng(length).normal(size=(T, E))
    mask = np.arange(T) < length
    x_torch = torch.from_numpy(x)[None].requires_grad_()
    expected = net(x_torch, length)[0]
    expected[1].backward()
    scores = jax.jit(lambda p, x_, m: model.apply(p, x_, mask=m))(params, x, mask)
    np.testing.assert_allclose(scores, expected.detach().numpy(), rtol=0, atol=1e-12)
    gradient = lrpjax.gradient(model.apply)(params, x, 1, mask=mask)
    np.testing.assert_allclose(gradient, x_torch.grad[0].numpy(), rtol=0, atol=1e-12)
