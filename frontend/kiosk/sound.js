// Sound cues made with WebAudio (no sound files): short beeps for a touch, a coin, success and
// a problem. Browsers allow audio only after a user gesture, so the context starts on the first
// cue, which always follows a touch or a key. Turned on and off with the on-screen toggle.

const STORAGE_KEY = "vendhub.kiosk.sound";
let context = null;
let enabled = localStorage.getItem(STORAGE_KEY) !== "off";

const CUES = {
  tap: [[660, 0.06]],
  coin: [[988, 0.06], [1319, 0.09]],
  success: [[523, 0.1], [659, 0.1], [784, 0.18]],
  error: [[392, 0.14], [262, 0.24]],
  attention: [[880, 0.08], [0, 0.06], [880, 0.08]],
};

export function soundEnabled() {
  return enabled;
}

export function setSoundEnabled(on) {
  enabled = Boolean(on);
  localStorage.setItem(STORAGE_KEY, enabled ? "on" : "off");
}

/** Play cue ``name`` (tap, coin, success, error, attention) when sound is on. */
export function play(name) {
  if (!enabled) return;
  const notes = CUES[name];
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!notes || !Context) return;
  try {
    context = context || new Context();
    if (context.state === "suspended") context.resume().catch(() => {});
    let at = context.currentTime + 0.01;
    for (const [frequency, duration] of notes) {
      if (frequency > 0) {
        const oscillator = context.createOscillator();
        const gain = context.createGain();
        oscillator.type = "sine";
        oscillator.frequency.value = frequency;
        gain.gain.setValueAtTime(0.0001, at);
        gain.gain.exponentialRampToValueAtTime(0.25, at + 0.01);
        gain.gain.exponentialRampToValueAtTime(0.0001, at + duration);
        oscillator.connect(gain).connect(context.destination);
        oscillator.start(at);
        oscillator.stop(at + duration + 0.02);
      }
      at += duration;
    }
  } catch {
    // No audio device: the kiosk works the same without sound.
  }
}
