"""train.compile=true (torch.compile of G's synthesis and D, inductor on the CPU): the same losses as eager.

Inductor draws random numbers (the synthesis noise) with its own generator; `fallback_random` makes it use
eager's, so both runs see the same noise and the losses can be compared. Costs ~1-4 min of compiling on a
cold cache (~/.cache or /tmp/torchinductor_*), much less after."""
from __future__ import annotations

import numpy as np
import pytest
from test_training import LossRecorder, _cfg, _fit, dataset  # noqa: F401 - 16 px dataset fixture


@pytest.mark.timeout(900)
def test_compiled_training_steps_match_eager(tmp_path, dataset, monkeypatch):  # noqa: F811
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    common = ("trainer.max_epochs=1", "+trainer.limit_train_batches=2", "train.style_mixing=0")
    eager, compiled = LossRecorder(), LossRecorder()
    _fit(_cfg(tmp_path / "eager", dataset, *common), [eager])
    _fit(_cfg(tmp_path / "compiled", dataset, *common, "train.compile=true"), [compiled])
    assert len(eager.rows) == 2
    np.testing.assert_allclose(np.array(compiled.rows), np.array(eager.rows), rtol=1e-4, atol=1e-5)
