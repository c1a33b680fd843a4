"""Click on what to track in a live camera; masks follow it. CPU, no torch: slimsam_edge, cv2, numpy.

    python examples/camera_app.py BUNDLE [SOURCE]        # SOURCE: camera index (default 0), file, folder
    python examples/camera_app.py BUNDLE clip.mp4 --point 120,80 --frames 50   # no display: prints

Left click: track the object under the cursor. Right click: drop the newest object. q: quit.
Without a display (opencv-python-headless) give --point x,y; each frame's states are printed.
"""
import argparse
import queue
import threading

import cv2

from slimsam_edge import EdgePredictor
from slimsam_edge.apps.pipeline import Pipeline
from slimsam_edge.apps.tracker import Tracker
from slimsam_edge.apps.video import draw_tracks
from slimsam_edge.apps.video_io import open_source, paced

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("bundle")
ap.add_argument("source", nargs="?", default="0")
ap.add_argument("--point", action="append", default=[], help="x,y of an object on the first frame")
ap.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: at the end)")
args = ap.parse_args()

predictor = EdgePredictor.from_bundle(args.bundle)  # backend and precision picked for this machine
tracker = Tracker(predictor)          # used only on the pipeline's process thread
clicks = queue.SimpleQueue()          # from the window (main thread) to the process thread
for p in args.point:
    clicks.put(("add", [float(v) for v in p.split(",")]))
shown = queue.Queue(maxsize=1)        # newest overlay, from the sink thread to the window


def process(index, frame, embedding):  # process thread: the tracker's only user
    while not clicks.empty():
        action, xy = clicks.get()
        if action == "add":
            tracker.add_object(frame, points=[xy], embedding=embedding)
        elif tracker.objects:
            tracker.remove_object(tracker.objects[-1])
    return tracker.update(frame, embedding=embedding)


def sink(index, frame, results):       # sink thread
    if window:
        if shown.full():
            shown.get_nowait()
        shown.put(draw_tracks(frame, results))
    else:
        print(index, {k: (r.state, round(r.score, 2), r.bbox) for k, r in results.items()}, flush=True)
    if args.frames and index + 1 >= args.frames:
        pipe.stop()


try:
    cv2.namedWindow("slimsam-edge")
    window = True
except cv2.error:                      # opencv-python-headless: no GUI
    window = False
with open_source(args.source) as source:
    frames = source if source.live else paced(source, source.fps or 30)  # a file: at its own rate
    pipe = Pipeline(frames, predictor.encode, process, sink, realtime=True)  # encode the newest frame
    if not window:
        stats = pipe.run()
    else:
        def on_mouse(event, x, y, *_):
            if event in (cv2.EVENT_LBUTTONDOWN, cv2.EVENT_RBUTTONDOWN):
                clicks.put(("add" if event == cv2.EVENT_LBUTTONDOWN else "drop", [x, y]))
        cv2.setMouseCallback("slimsam-edge", on_mouse)
        done = []
        worker = threading.Thread(target=lambda: done.append(pipe.run()))
        worker.start()
        while worker.is_alive():       # the window lives on the main thread
            try:
                cv2.imshow("slimsam-edge", cv2.cvtColor(shown.get(timeout=0.05), cv2.COLOR_RGB2BGR))
            except queue.Empty:
                pass
            if cv2.waitKey(1) & 0xFF == ord("q"):
                pipe.stop()
        worker.join()
        stats = done[0] if done else None
print(stats.to_dict() if stats else "stopped by an error (see above)")
