"""Pure UFM objectives: `loss(params, problem) -> scalar`."""

from ._objective import ce_loss as ce_loss
from ._objective import data_loss as data_loss
from ._objective import logits as logits
from ._objective import mse_loss as mse_loss
from ._objective import objective as objective
from ._objective import penalty as penalty
