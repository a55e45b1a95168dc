"""LaSeR: the z_c token after finished responses and the self-reward formula."""

import numpy as np

from rlvr_jax.train.stages import laser as ds


def test_append_self_reward_token_and_self_rewards():
  tokens = np.array([[5, 2, 0], [7, 8, 9], [6, 6, 2]])
  lengths, truncated = np.array([2, 3, 3]), np.array([0, 1, 0])
  out, positions = ds.append_self_reward_token(tokens, lengths, truncated, token_id=99, pad_id=0)
  np.testing.assert_array_equal(out, [[5, 2, 99, 0], [7, 8, 9, 0], [6, 6, 2, 99]])
  np.testing.assert_array_equal(positions, [2, 3, 3])
  logprobs = np.log(np.array([[0.5, 0.5, 0.25, 1.0], [0.5, 0.5, 0.5, 1.0],
                              [0.5, 0.5, 0.5, 0.125]]))
  r = ds.laser_self_rewards(logprobs, positions, truncated, beta_v=0.1, c_ref=-2.0,
                            temperature=2.0)
  # r_s = 0.1 (2 log p - (-2)); the truncated row scores 0.
  np.testing.assert_allclose(r, [0.1 * (2 * np.log(0.25) + 2), 0.0,
                                 0.1 * (2 * np.log(0.125) + 2)], rtol=1e-6)
