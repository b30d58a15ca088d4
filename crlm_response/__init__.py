"""crlm-response: response criteria and chemotherapy toxicity flags for colorectal liver metastases.

from crlm_response import load_case, load_rules, assess
result = assess("sample_cases/folfox_pr.yaml")
result.to_dict()["criteria"]["recist1.1"]["best_overall_response"]
"""

__version__ = "0.1.0"

from .assessment import Assessment, assess  # noqa: E402
from .readers import load_case, parse_case  # noqa: E402
from .rules import load_rules  # noqa: E402

__all__ = ["Assessment", "__version__", "assess", "load_case", "load_rules", "parse_case"]
