"""Names the command line and the app offer as choices, kept free of heavy imports (``yfpo --help`` is fast)."""

ATTRIBUTION_METHODS: tuple[str, ...] = ("attnlrp", "grad_x_act", "integrated_gradients", "activation",
                                        "contrast_math_nonmath", "contrast_correct_wrong")
ATTRIBUTION_TARGETS: tuple[str, ...] = ("answer_logprob", "solution_logprob", "logit_diff")
