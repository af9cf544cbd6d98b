"""Paper 000: pixel-wise SOAP on MNIST (``pointsym pixel-soap``): data (``data``), models
(``models``), CLI and experiments (``cli``)."""
