// The command-line programs end to end on a tiny synthetic dataset, and their answers to bad input:
// one sentence naming the problem and a non-zero exit.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/fileio.h"
#include "tests/harness.h"

namespace fs = std::filesystem;

using rft::TempDir;

namespace {

using rft::Run;
Run run(const std::string& args) { return rft::run_program(args); }

}  // namespace

TEST_SUITE("cli") {

TEST_CASE("make_synth -> train_gs -> evaluate -> deblur, with --resume") {
  TempDir d;
  Run r = run("make_synth --out " + (d / "data") + " --n 4 --size 48x48 --seed 1");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  r = run("make_synth --out " + (d / "data") + " --n 2 --size 48x48 --seed 2 --split test");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  std::string train = "train_gs " + (d / "data") + " --out " + (d / "run") +
                      " --device cpu --init-iters 4 --fit-iters 6 --iters 4 --crop 32 --batch 1 --sharp-pairs 0";
  r = run(train);
  REQUIRE_MESSAGE(r.code == 0, r.output);
  for (const char* f : {"gs.safetensors", "config.json", "log.jsonl", "report.html", "fits/synth_00003.safetensors"})
    CHECK_MESSAGE(rf::file_exists(d / ("run/" + std::string(f))), f);
  r = run(train);  // the folder holds a run now
  CHECK(r.code == 1);
  CHECK(r.output.find("already holds a training run") != std::string::npos);
  r = run("train_gs " + (d / "data") + " --out " + (d / "run") + " --resume");  // finished: writes the result again
  CHECK_MESSAGE(r.code == 0, r.output);
  r = run("train_gs " + (d / "data") + " --out " + (d / "run2") + " --from " + (d / "run") +
          " --device cpu --iters 3 --crop 32 --batch 1 --paper-output --sharp-pairs 2 --context-source both --shrink relu"
          " --keep-light off");
  CHECK_MESSAGE(r.code == 0, r.output);  // a deblurrer ablation on the same fits, + 2 sharp pairs fitted here
  CHECK(rf::file_exists(d / "run2/gs.safetensors"));
  for (const char* f : {"synth_00000.sharp.safetensors", "synth_00002.sharp.safetensors"})
    CHECK_MESSAGE(rf::file_exists(d / ("run2/fits/" + std::string(f))), f);
  CHECK_FALSE(rf::file_exists(d / "run/fits/synth_00000.sharp.safetensors"));
  // the defocus token, the photo's patch and the photo encoder on the same fits: the estimator trains first (run has
  // none), deblur names it and saves its map
  r = run("train_gs " + (d / "data") + " --out " + (d / "run3") + " --from " + (d / "run") +
          " --device cpu --iters 3 --crop 32 --batch 1 --defocus on --defocus-iters 3 --context-patch 4 --photo-encoder 4");
  CHECK_MESSAGE(r.code == 0, r.output);
  CHECK_MESSAGE(r.output.find("train_gs defocus") != std::string::npos, r.output);
  r = run("deblur --model gs --weights " + (d / "run3/gs.safetensors") + " --device cpu --depth " +
          (d / "data/test_c/depth/synth_00000.png") + " --save-map " + (d / "map.png") + " " +
          (d / "data/test_c/source/synth_00000.png") + " " + (d / "out3.png"));
  CHECK_MESSAGE(r.code == 0, r.output);
  CHECK_MESSAGE(r.output.find("defocus from its own estimator") != std::string::npos, r.output);
  CHECK(rf::file_exists(d / "map.png"));
  r = run("train_gs " + (d / "data") + " --out " + (d / "run4") + " --device cpu --iters 3 --crop 32 --batch 1 --defocus maybe");
  CHECK(r.code == 1);
  CHECK(r.output.find("--defocus must be on, off or auto, got 'maybe'") != std::string::npos);
  r = run("evaluate --data " + (d / "data") + " --model gs --weights " + (d / "run/gs.safetensors") + " --device cpu --out " +
          (d / "eval"));
  CHECK_MESSAGE(r.code == 0, r.output);
  CHECK(r.output.find("| PSNR (dB) |") != std::string::npos);
  r = run("deblur --model gs --weights " + (d / "run/gs.safetensors") + " --device cpu --depth " +
          (d / "data/test_c/depth/synth_00000.png") + " " + (d / "data/test_c/source/synth_00000.png") + " " + (d / "out.png"));
  CHECK_MESSAGE(r.code == 0, r.output);
  CHECK(rf::file_exists(d / "out.png"));
  r = run("deblur --model gs --weights " + (d / "run/gs.safetensors") + " --device cpu " +
          (d / "data/test_c/source/synth_00000.png") + " " + (d / "out2.png"));
  CHECK(r.code == 1);
  CHECK(r.output.find("needs a depth map, and none was given") != std::string::npos);
  r = run("gs_fit " + (d / "data/test_c/source/synth_00001.png") + " --out " + (d / "fit") + " --iters 20 --quiet --device cpu");
  CHECK_MESSAGE(r.code == 0, r.output);
  CHECK(rf::file_exists(d / "fit/blobs.safetensors"));
}

TEST_CASE("train_gs stopped in every stage and resumed ends with the same weights as an uninterrupted run") {
  TempDir d;
  Run r = run("make_synth --out " + (d / "data") + " --n 4 --size 48x48 --seed 3");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  // 4 initializer steps, 4 fits and 1 sharp pair's fit (one per 15 images, rounded up), 4 deblurrer steps: global
  // steps 0-3, 4-8, 9-12.
  std::string args = " --device cpu --init-iters 4 --fit-iters 5 --iters 4 --crop 32 --batch 1 --checkpoint-every 100";
  r = run("train_gs " + (d / "data") + " --out " + (d / "whole") + args);
  REQUIRE_MESSAGE(r.code == 0, r.output);
  r = run("train_gs " + (d / "data") + " --out " + (d / "parts") + args + " --stop-after 2");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  CHECK(r.output.find("stopped after step 2") != std::string::npos);
  CHECK_FALSE(rf::file_exists(d / "parts/gs.safetensors"));
  for (const char* stop : {"6", "10"}) {  // the original command line is accepted with --resume
    r = run("train_gs " + (d / "data") + " --out " + (d / "parts") + args + " --resume --stop-after " + stop);
    REQUIRE_MESSAGE(r.code == 0, r.output);
    CHECK_MESSAGE(r.output.find("stopped after step " + std::string(stop)) != std::string::npos, r.output);
  }
  CHECK(rf::file_exists(d / "parts/fits/synth_00000.sharp.safetensors"));
  r = run("train_gs " + (d / "data") + " --out " + (d / "parts") + " --resume --iters 5");  // a changed option is refused
  CHECK(r.code == 1);
  CHECK(r.output.find("iters = 5 differs from the run's 4") != std::string::npos);
  r = run("train_gs " + (d / "data") + " --out " + (d / "parts") + " --resume");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  CHECK(rf::read_file(d / "whole/gs.safetensors") == rf::read_file(d / "parts/gs.safetensors"));
  // The log holds each step once, as if the run had not stopped.
  std::string log = rf::read_file(d / "parts/log.jsonl"), whole = rf::read_file(d / "whole/log.jsonl");
  auto count = [](const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) n++;
    return n;
  };
  CHECK(count(log, "\"stage\":\"deblurrer\"") == count(whole, "\"stage\":\"deblurrer\""));
  CHECK(count(log, "\"stage\":\"initializer\"") == count(whole, "\"stage\":\"initializer\""));
  // A run saved before --sharp-pairs existed (no key in its config) resumes as it was trained: without sharp pairs,
  // not with today's default of 10.
  r = run("train_gs " + (d / "data") + " --out " + (d / "old") + args + " --sharp-pairs 0 --stop-after 6");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  nlohmann::json cfg = nlohmann::json::parse(rf::read_file(d / "old/config.json"));
  cfg["train"]["net"].erase("sharp_pairs");
  cfg["train"]["net"].erase("sharp_cap_db");
  rf::write_file_atomic(d / "old/config.json", cfg.dump(2));
  r = run("train_gs " + (d / "data") + " --out " + (d / "old") + " --resume");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  CHECK(rf::file_exists(d / "old/gs.safetensors"));
  CHECK_FALSE(rf::file_exists(d / "old/fits/synth_00000.sharp.safetensors"));
}

TEST_CASE("train_ggkm grows ggkm+ (shallow steps, then every block), and resumes across the growth like a whole run") {
  TempDir d;
  Run r = run("make_synth --out " + (d / "data") + " --n 4 --size 48x48 --seed 4");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  // 3 steps at ggkm's depth (global 0-2), then 2 with every residual block (3-4).
  const std::string args = " --variant ggkm+ --device cpu --shallow-iters 3 --iters 2 --crop 32 --batch 1 --val-images 1"
                           " --val-crop 32 --log-every 1";
  r = run("train_ggkm " + (d / "data") + " --out " + (d / "whole") + args);
  REQUIRE_MESSAGE(r.code == 0, r.output);
  std::string log = rf::read_file(d / "whole/log.jsonl");
  CHECK(log.find("\"stage\":\"shallow\",\"step\":2") != std::string::npos);
  CHECK(log.find("\"stage\":\"main\",\"step\":1") != std::string::npos);
  r = run("train_ggkm " + (d / "data") + " --out " + (d / "parts") + args + " --stop-after 1");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  for (const char* stop : {"3", "4"}) {  // at the growth itself, then inside the grown stage
    r = run("train_ggkm " + (d / "data") + " --out " + (d / "parts") + args + " --resume --stop-after " + stop);
    REQUIRE_MESSAGE(r.code == 0, r.output);
    CHECK_MESSAGE(r.output.find("stopped after step " + std::string(stop)) != std::string::npos, r.output);
  }
  r = run("train_ggkm " + (d / "data") + " --out " + (d / "parts") + " --resume");
  REQUIRE_MESSAGE(r.code == 0, r.output);
  CHECK(rf::read_file(d / "whole/ggkm+.safetensors") == rf::read_file(d / "parts/ggkm+.safetensors"));
  // ggkm has one residual block per backbone block: nothing to grow.
  r = run("train_ggkm " + (d / "data") + " --out " + (d / "flat") + " --device cpu --shallow-iters 3 --iters 1 --crop 32");
  CHECK(r.code == 1);
  CHECK_MESSAGE(r.output.find("--shallow-iters needs more than one residual block per BFE block") != std::string::npos,
                r.output);
}

TEST_CASE("bad input: one clear sentence and a non-zero exit") {
  TempDir d;
  Run r = run("evaluate --data " + (d / "nothing") + " --identity");
  CHECK(r.code == 1);
  CHECK(r.output.find("nothing: not a folder") != std::string::npos);
  r = run("make_synth --out " + (d / "x") + " --n 2 --size 64by64");
  CHECK(r.code == 1);
  CHECK(r.output.find("--size expects HxW") != std::string::npos);
  r = run("make_synth --out " + (d / "x") + " --n 2 --colour red");
  CHECK(r.code == 1);
  CHECK(r.output.find("unknown option --colour") != std::string::npos);
  r = run("gs_fit " + (d / "missing.png") + " --out " + (d / "f"));
  CHECK(r.code == 1);
  CHECK(r.output.find("missing.png: no such file") != std::string::npos);
  r = run("train_gs " + (d / "x") + " --device cuda");
  CHECK(r.code == 1);
  if (!rf::cuda_available()) CHECK(r.output.find("CUDA is unusable") != std::string::npos);
  r = run("deblur --model nonesuch --weights w.safetensors a.png b.png");
  CHECK(r.code == 1);
  CHECK(r.output.find("unknown model 'nonesuch'") != std::string::npos);
  r = run("evaluate --help");
  CHECK(r.code == 0);
  CHECK(r.output.find("usage: evaluate") != std::string::npos);
}

}  // TEST_SUITE
