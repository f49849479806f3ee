"""The PV family's decoders: SunSpec Modbus register chains (:mod:`.sunspec`, driven by the SunSpec
model files in ``sunspec_models/``) and Fronius Solar API v1 answers (:mod:`.fronius`)."""
