"""conventional.rewards: the proxy network is labelled, IS/FID rewards equal the metrics on the
same samples, the batched FID equals a loop, AGAN's shaping."""
import numpy as np
import pytest
import torch

from stylenas.conventional import rewards
from stylenas.metrics import frechet_distance, inception_score, to_uint8


@pytest.fixture(scope="module")
def proxy():
    return rewards.reward_network("proxy", seed=0)


def tiny_generator(seed, latent_dim=4, size=8):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(latent_dim, 3 * size * size), torch.nn.Tanh(),
                               torch.nn.Unflatten(1, (3, size, size))).eval()


def test_proxy_is_labelled_and_deterministic(proxy):
    assert rewards.is_proxy(proxy) and rewards.score_names(proxy) == ("proxy_is", "proxy_fid")
    other = rewards.ProxyInception(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(proxy.state_dict().values(), other.state_dict().values()))
    assert not torch.equal(rewards.ProxyInception(seed=1).fc.weight, proxy.fc.weight)
    with pytest.raises(ValueError, match="proxy"):
        rewards.reward_network("random")


def test_inception_score_of_equals_the_metric_on_the_same_samples(proxy):
    G = tiny_generator(0)
    value = rewards.inception_score_of(G, proxy, 12, 4, seed=3, splits=2, batch=5)
    with torch.no_grad():
        z = torch.cat([rewards._latents(3, s, n, 4) for s, n in ((0, 5), (5, 5), (10, 2))])
        logits = proxy(to_uint8(G(z))).logits_unbiased
    assert value == pytest.approx(inception_score(logits, splits=2)[0], rel=1e-5)  # float32 batches differ
    assert value == rewards.inception_score_of(G, proxy, 12, 4, seed=3, splits=2, batch=5)
    assert value != rewards.inception_score_of(G, proxy, 12, 4, seed=4, splits=2, batch=5)
    assert value > 1.0


def test_fid_rewards_batched_equals_a_loop(proxy):
    real = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ref = rewards.reference_statistics(real, proxy, batch=7)
    ref_iter = rewards.reference_statistics(list(real), proxy, batch=50)
    # the features of batches of 7 and of 50 differ in float32 rounding (and by the number of threads)
    np.testing.assert_allclose(ref[0], ref_iter[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref[1], ref_iter[1], rtol=1e-4, atol=1e-6)
    generators = [tiny_generator(s) for s in range(3)]
    batched = rewards.fid_rewards(generators, proxy, ref, 16, 4, seed=1)
    loop = []
    for G in generators:
        _, stats = rewards.sample_outputs(G, proxy, 16, 4, seed=1)
        loop.append(frechet_distance(stats.mu(), stats.sigma(), *ref))
    np.testing.assert_allclose(batched, loop, rtol=1e-6)
    assert len(set(np.round(batched, 6))) == 3


def test_shaped_is_reward():
    """AGAN section 3.3, R = (IS - IS_min) / (IS_max - IS), IS_min 1 and IS_max 11.24 (section 4.2),
    by hand; at and beyond the pole the IS counts as IS_max - 0.01."""
    assert rewards.shaped_is_reward(6.12) == pytest.approx(5.12 / 5.12)
    assert rewards.shaped_is_reward(1.0) == 0.0
    assert rewards.shaped_is_reward(3.0, is_min=1.0, is_max=4.0) == pytest.approx(2.0)
    assert not rewards.is_clamped(11.23) and rewards.is_clamped(11.2301) and rewards.is_clamped(12.0)
    cap = (11.23 - 1) / 0.01
    assert rewards.shaped_is_reward(11.24) == pytest.approx(cap) == rewards.shaped_is_reward(40.0)
    assert rewards.shaped_is_reward(11.22) == pytest.approx(10.22 / 0.02) and 10.22 / 0.02 < cap
    with pytest.raises(ValueError, match="IS_max"):
        rewards.shaped_is_reward(3.0, is_min=2.0, is_max=2.005)
