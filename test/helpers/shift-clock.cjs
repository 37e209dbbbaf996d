// Preloaded (NODE_OPTIONS=--require) into a spawned amp-fme: moves its wall clock (Date.now, new Date()) by
// AMP_FME_TEST_CLOCK_SHIFT_HOURS hours, as a machine whose clock jumped ahead (or back) would see it.
const shift = Number(process.env.AMP_FME_TEST_CLOCK_SHIFT_HOURS || 0) * 3600e3;
const RealDate = Date;
class ShiftedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + shift);
    else super(...args);
  }
  static now() {
    return RealDate.now() + shift;
  }
}
globalThis.Date = ShiftedDate;
