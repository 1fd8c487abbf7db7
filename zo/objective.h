// Loss plans: what a ZO step evaluates (zo/spsa.h's LossPlan) for the two kinds of task.
#pragma once
#include <string>
#include <vector>

#include "zo/spsa.h"

namespace zo {

// Mean next-token NLL over every target of the sequences (one token-mean over the batch).
LossPlan lm_loss_plan(const std::vector<std::vector<int32_t>>& seqs);

// Classification over candidate continuations (MeZO): objective "ce" = mean cross-entropy over the
// candidates' mean log-probs; "nll" = mean NLL of the gold candidate; "accuracy" = minus the
// fraction of the batch predicted right (a non-differentiable objective).
LossPlan classification_loss_plan(const std::vector<const std::vector<int32_t>*>& prompts, const std::vector<int>& labels,
                                  const std::vector<std::vector<int32_t>>& candidates,
                                  const std::string& objective = "ce");

}  // namespace zo
