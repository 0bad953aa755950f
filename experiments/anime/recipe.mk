# Anime faces (seed study): make anime-prepare ANIME_RAW=<folder> ; make anime-train FFHQ_PKL=<file>
ANIME_DIR ?= data/anime
need = @test -n "$($(1))" && test -e "$($(1))" || { echo "error: set $(1)=<$(2)>" >&2; exit 1; }

.PHONY: anime-prepare anime-train anime-sweep anime-report
anime-prepare: $(STAMP)
	$(call need,ANIME_RAW,folder of anime face portraits (jpg or png or webp; a few hundred Danbooru2020 portraits))
	$(PY) -m stylegan_blend prepare images "$(ANIME_RAW)" "$(ANIME_DIR)" --res 256 --val-fraction 0.05

anime-train: $(STAMP)
	$(call need,FFHQ_PKL,NVIDIA ffhq-res256-mirror-paper256-noaug.pkl or any supported 256 px checkpoint)
	@test -f "$(ANIME_DIR)/manifest.json" || { echo "error: set ANIME_DIR=<folder made by make anime-prepare> ($(ANIME_DIR) has no manifest.json)" >&2; exit 1; }
	$(PY) -m stylegan_blend.app.train experiment=anime paths.ffhq_pkl="$(FFHQ_PKL)" data.path="$(ANIME_DIR)" $(ARGS)

anime-sweep: $(STAMP)
	$(call need,FFHQ_PKL,NVIDIA ffhq-res256-mirror-paper256-noaug.pkl or any supported 256 px checkpoint)
	@test -f "$(ANIME_DIR)/manifest.json" || { echo "error: set ANIME_DIR=<folder made by make anime-prepare> ($(ANIME_DIR) has no manifest.json)" >&2; exit 1; }
	$(PY) -m stylegan_blend.app.train -m experiment=anime paths.ffhq_pkl="$(FFHQ_PKL)" data.path="$(ANIME_DIR)" augment=ada,diffaug $(ARGS)

anime-report: $(STAMP)
	@runs=$$(ls -d outputs/anime/*/ multirun/anime/*/*/ 2>/dev/null); test -n "$$runs" || { echo "error: no anime runs under outputs/anime or multirun/anime; run make anime-train first" >&2; exit 1; }; \
	$(PY) -m stylegan_blend report $$runs --out outputs/anime/report
