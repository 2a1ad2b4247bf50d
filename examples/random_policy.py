"""The return of the uniform random policy: the floor to read a study's scores against.

    python examples/random_policy.py MinAtar/Breakout-v1 MinAtar/SpaceInvaders-v1

Episodes ``0..N-1`` are reset with their index as seed, and the action space is seeded
the same way, so the figures are reproducible. Environments are made as lpdm makes them
(MinAtar ids registered, ``--env-kwargs`` syntax). The returns that reports normalise by
(``lpdm.suites.REFERENCES``) were measured with the default 100 episodes:

    python examples/random_policy.py CartPole-v1 Acrobot-v1 LunarLander-v3 Pendulum-v1 \
        InvertedPendulum-v4 InvertedDoublePendulum-v4 Hopper-v4 HalfCheetah-v4 \
        MinAtar/Breakout-v1 MinAtar/SpaceInvaders-v1
"""

import argparse

import numpy as np

from lpdm.envs import make_env


def random_returns(env_id: str, episodes: int, env_kwargs: str = "") -> np.ndarray:
    """Undiscounted returns ``[episodes]`` of uniformly random actions."""
    env = make_env(env_id, env_kwargs=env_kwargs)
    returns = np.zeros(episodes)
    for episode in range(episodes):
        env.reset(seed=episode)
        env.action_space.seed(episode)
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            returns[episode] += float(reward)
            done = terminated or truncated
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env", nargs="+", help="Gymnasium environment ids")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--env-kwargs", default="", help="KEY=VALUE,... for gymnasium.make")
    args = parser.parse_args()
    for env_id in args.env:
        r = random_returns(env_id, args.episodes, args.env_kwargs)
        print(f"{env_id}: mean {r.mean():.2f} ± {r.std(ddof=1) / np.sqrt(r.size):.2f} "
              f"(standard error), median {np.median(r):.1f}, {r.size} episodes")


if __name__ == "__main__":
    main()
