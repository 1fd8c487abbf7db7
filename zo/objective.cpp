#include "zo/objective.h"

#include <algorithm>
#include <memory>

#include "core/error.h"
#include "zo/task.h"

namespace zo {

LossPlan lm_loss_plan(const std::vector<std::vector<int32_t>>& seqs) {
  LossPlan p;
  p.batch = Batch::from_sequences(seqs);
  for (int s = 0; s < p.batch.n_seqs(); s++)
    for (int t = p.batch.seq_start[size_t(s)]; t + 1 < p.batch.seq_start[size_t(s) + 1]; t++) {
      p.rows.push_back(t);
      p.ids.push_back(p.batch.ids[size_t(t) + 1]);
    }
  p.loss = [](const std::vector<double>& lp) {
    double s = 0;
    for (double v : lp) s -= v;
    return lp.empty() ? 0.0 : s / double(lp.size());
  };
  return p;
}

LossPlan classification_loss_plan(const std::vector<const std::vector<int32_t>*>& prompts, const std::vector<int>& labels,
                                  const std::vector<std::vector<int32_t>>& candidates, const std::string& objective) {
  ZO_CHECK(prompts.size() == labels.size(), "classification_loss_plan: {} prompts, {} labels", prompts.size(),
           labels.size());
  ZO_CHECK(objective == "ce" || objective == "nll" || objective == "accuracy",
           "objective '{}': expected ce, nll or accuracy", objective);
  auto cp = std::make_shared<CandidatePlan>(plan_candidates(prompts, candidates));
  LossPlan p;
  p.batch = cp->batch;
  p.keep = cp->keep;
  p.rows = cp->rows;
  p.ids = cp->ids;
  // Single-token candidates are all read at their prompt's last row, so a row's log-sum-exp shifts
  // every score of that prompt alike: cross-entropy and accuracy over them ignore it (nll does not).
  bool single = true;
  for (size_t len : cp->cand_len) single = single && len == 1;
  p.row_shift_invariant = single && objective != "nll";
  p.loss = [cp, labels, objective](const std::vector<double>& lp) {
    auto sc = plan_scores(*cp, lp);
    double s = 0;
    for (size_t i = 0; i < sc.size(); i++) {
      if (objective == "ce")
        s += candidate_cross_entropy(sc[i], labels[i]);
      else if (objective == "nll")
        s -= sc[i][size_t(labels[i])];
      else
        s -= double(std::max_element(sc[i].begin(), sc[i].end()) - sc[i].begin() == labels[i]);
    }
    return sc.empty() ? 0.0 : s / double(sc.size());
  };
  return p;
}

}  // namespace zo
