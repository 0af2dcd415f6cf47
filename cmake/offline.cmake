# See .cargo/config.toml: SIMDe from libsimde-dev, and no downloads at all.
set(FETCHCONTENT_SOURCE_DIR_SIMDE "/usr/include" CACHE PATH "offline simde" FORCE)
set(FETCHCONTENT_FULLY_DISCONNECTED ON CACHE BOOL "" FORCE)
