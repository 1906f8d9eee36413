"""The estimator math, used by protocols, families and ``repeval validate``: mutual-information bounds
(Hjelm et al. 2019, §3.1; Belghazi et al. 2018), critics, SSIM, the shared networks and the feature
spectrum. Pure functions of tensors: nothing here reads or writes files."""


class ProtocolFailure(RuntimeError):
    """A protocol could not produce a number (diverged, non-finite loss)."""
