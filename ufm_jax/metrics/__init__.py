"""Neural-collapse metrics of a UFM point, and its rotation-free gaps to the analytic minimum."""

from ._nc import class_means as class_means
from ._nc import compare_with_theory as compare_with_theory
from ._nc import etf_distance as etf_distance
from ._nc import general_orthogonal_frame_distance as general_orthogonal_frame_distance
from ._nc import mean_cosines as mean_cosines
from ._nc import minority_classifier_spread as minority_classifier_spread
from ._nc import minority_logit_spread as minority_logit_spread
from ._nc import minority_spread as minority_spread
from ._nc import nc1 as nc1
from ._nc import nc3 as nc3
from ._nc import nc3_directional as nc3_directional
from ._nc import nc_metrics as nc_metrics
from ._nc import orthogonal_frame_distance as orthogonal_frame_distance
from ._nc import singular_values as singular_values
from ._nc import within_class_spread as within_class_spread
