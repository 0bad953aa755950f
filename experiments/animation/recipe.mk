# Animation frames (seed study): make animation-prepare CLIPS=<folder of clips> ; make animation-train FFHQ_PKL=<file>
ANIMATION_DIR ?= data/animation
FRAMES_PER_CLIP ?= 4

.PHONY: animation-prepare animation-train animation-sweep animation-report
animation-prepare: $(STAMP)
	$(call need,CLIPS,folder of animation clips (mp4/mkv/webm/avi) showing faces)
	$(PY) -m stylegan_blend prepare video "$(CLIPS)" "$(ANIMATION_DIR)" --res 256 --frames-per-clip $(FRAMES_PER_CLIP) $(if $(FACE_CROP),--face-crop)

animation-train: $(STAMP)
	$(call need,FFHQ_PKL,NVIDIA ffhq-res256-mirror-paper256-noaug.pkl or any supported 256 px checkpoint)
	@test -f "$(ANIMATION_DIR)/manifest.json" || { echo "error: set ANIMATION_DIR=<folder made by make animation-prepare> ($(ANIMATION_DIR) has no manifest.json)" >&2; exit 1; }
	$(PY) -m stylegan_blend.app.train experiment=animation paths.ffhq_pkl="$(FFHQ_PKL)" data.path="$(ANIMATION_DIR)" $(ARGS)

animation-sweep: $(STAMP)
	$(call need,FFHQ_PKL,NVIDIA ffhq-res256-mirror-paper256-noaug.pkl or any supported 256 px checkpoint)
	@test -f "$(ANIMATION_DIR)/manifest.json" || { echo "error: set ANIMATION_DIR=<folder made by make animation-prepare> ($(ANIMATION_DIR) has no manifest.json)" >&2; exit 1; }
	$(PY) -m stylegan_blend.app.train -m experiment=animation paths.ffhq_pkl="$(FFHQ_PKL)" data.path="$(ANIMATION_DIR)" sweep=swap_grid augment=ada,diffaug $(ARGS)

animation-report: $(STAMP)
	@runs=$$(ls -d outputs/animation/*/ multirun/animation/*/*/ 2>/dev/null); test -n "$$runs" || { echo "error: no animation runs under outputs/animation or multirun/animation; run make animation-train first" >&2; exit 1; }; \
	$(PY) -m stylegan_blend report $$runs --out outputs/animation/report
