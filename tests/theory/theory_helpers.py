from theory.state import OrderParameters


def random_state(K, M, rng, adaptive=True):
    """A random *valid* state: overlaps of random Gaussian weights in a few dimensions (so
    the field covariance is a Gram matrix, hence PSD), random scales and readouts."""
    d = K + M + 3
    w = rng.normal(size=(K, d)) * rng.uniform(0.3, 1.5, size=(K, 1))
    ws = rng.normal(size=(M, d)) * rng.uniform(0.3, 1.5, size=(M, 1))
    N = d
    st = OrderParameters(
        Q=w @ w.T / N,
        R=w @ ws.T / N,
        T=ws @ ws.T / N,
        v=rng.normal(size=K),
        v_star=rng.normal(size=M),
        b=rng.normal(size=K),
        c=(rng.normal(size=M) if adaptive else None),
        sigma_F2=(rng.uniform(0.01, 1.0) if adaptive else None),
    )
    return st
