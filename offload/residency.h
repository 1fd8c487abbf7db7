// The residency planner of the GPU engine (offload/gpu_engine.h), a pure function of the model's
// layout and the device budget so that it is tested without a GPU.
//
// Device memory of a step, beyond activations (o.reserve):
//   the globals (embeddings, head, final norm) and a perturbed copy of them   2 * globals
//   one block-sized f32 working copy                                          block
//   resident blocks, f32                                                      sum of their sizes
//   when a block streams: two ring slots in the wire dtype (+ fp8 scales) and, for a wire dtype
//   other than f32, one f32 decode buffer                                     streaming
//   (two_way: some streamed blocks travel as f32 masters and come back updated, so the ring slots
//   hold f32 blocks whatever the wire dtype)
// As many blocks are made resident as fit in order with room left for the streaming buffers (the
// last block may take that room when it is the only one left). Which ones (Placement below): the
// streamed blocks come late in the pass, with resident blocks between them, so that each streamed
// block's upload overlaps the compute of the resident blocks before it (the engine uploads one
// streamed block ahead), and the host's update of the streamed blocks, which starts when the step's
// projected gradient is known, begins well ahead of the device.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/wire.h"
#include "models/model.h"

namespace zo {

// Which blocks stream, given S of L do:
//   Tail    the S streamed blocks alternate with resident ones over the last min(L, 2S) blocks, the
//           last block streamed: the host gets the resident blocks before them as a head start.
//   Spread  streamed blocks spread over the whole pass, each last in its group of about L / S.
//   Auto    Tail one-way; Spread when blocks may go two-way (device updates not 0, auto included):
//           their f32 masters go up and come back (the first streamed blocks), and that traffic
//           needs the wider gaps (bench/step_model.py).
//   First   each streamed block first in its group (block 0 streams): the rule Auto replaced, kept
//           so that a benchmark can measure both in one run (zo bench train --placement).
// Tail and Spread are the same rule when 2S >= L.
enum class Placement : uint8_t { Auto, Tail, Spread, First };
Placement parse_placement(const std::string& s);  // "auto" | "tail" | "spread" | "first"
const char* placement_name(Placement p);

struct ResidencyPlan {
  int resident_blocks = 0, streamed_blocks = 0;
  size_t globals_bytes = 0;      // f32 globals
  size_t resident_bytes = 0;     // f32 globals + resident blocks
  size_t fixed_bytes = 0;        // perturbed globals + working copy (+ streaming buffers)
  size_t streaming_bytes = 0;    // ring slots (+ scales) + decode buffer, if anything streams
  size_t max_groups = 0;         // fp8 scales of the largest block
  std::vector<uint8_t> resident; // per block: kept on the device
  // The rule asked for (Auto resolved). Blocks of unequal sizes may fall back to the first R
  // resident (see plan_residency); the models zo knows have blocks of one size.
  Placement placement = Placement::Tail;
  size_t device_bytes() const { return resident_bytes + fixed_bytes; }
  std::string describe(const Model& m, WireDType wire) const;
};

// gpu_mem 0: everything resident. Throws a one-line error when gpu_mem cannot hold the minimum.
ResidencyPlan plan_residency(const Model& m, size_t gpu_mem, size_t reserve, WireDType wire, bool two_way = false,
                             Placement placement = Placement::Auto);

// What one pass's blocks cost, in seconds per block, for model_pass_seconds.
struct PassRates {
  std::vector<double> compute;  // per block: its compute on the device (every version of the pass)
  double host = 0;              // the host's update of one one-way streamed block
  double up_one = 0;            // upload of a one-way streamed block (wire dtype)
  double up_two = 0;            // upload of a two-way streamed block (f32 masters)
  double down_two = 0;          // a two-way block's updated masters sent back (f32)
  double dev_two = 0;           // device time a two-way block's update adds to its compute
  int slots = 2;                // ring slots
};

// The timing model of one offloaded pass (bench/step_model.py's, event by event): the device runs
// the blocks in order; the host updates the one-way streamed blocks in pass order from the pass's
// start; a streamed block's upload waits for its host update (one-way), the previous upload, and
// its ring slot (freed when the block `slots` streamed blocks earlier has computed, or for a
// two-way one, has been sent back); its compute waits for its upload (a two-way block's also
// includes its update on the device, dev_two); a two-way block is sent back after it computes.
// The first n_two streamed blocks (pass order) are two-way. Returns when the last of the device,
// the link back and the host is done. Embeddings and head are left out (the same time whatever
// the split). The engine starts a send-back once the block's update is applied; the later start here
// stands in for what the model leaves out, since the two-way runs measured on an H100 were slower
// than even this (bench/README.md, "Since run 6").
double model_pass_seconds(const std::vector<uint8_t>& resident, const PassRates& r, int n_two);

// The number of two-way blocks (0 .. streamed) whose modelled pass is the shortest; of those within
// 0.5% of it, the smallest (each two-way block moves 4 bytes per weight each way).
int best_two_way(const std::vector<uint8_t>& resident, const PassRates& r);

}  // namespace zo
