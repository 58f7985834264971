"""How fast a net learns the small-objects set, with minwa's loader and augmentation out of the way.

Issue 11's reading ("if high resolution does not help, find out why"): the images are loaded once into
memory (centre square, resized to S), then one registry model trains with AdamW and a one-cycle rate on
random C-crops and flips, and prints train loss and centre-crop test accuracy per epoch.

    D=DATA python scripts/small_objects_learnability.py S C MODEL THREADS EPOCHS   # MODEL: photo4, photo2 or a registry name
    PCT=0.05 ...                                                                     # the one-cycle warm-up fraction

DATA is a `minwa make-dataset small-objects` folder (its boxes.csv lists every image). Figures: docs/BENCHMARKS.md §11.
"""
import sys, time, csv, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from minwa.models.registry import create_model  # noqa
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
S = int(sys.argv[1]); C = int(sys.argv[2]); which = sys.argv[3]
import os; D = os.environ.get('D', '/tmp/so/data')
rows = list(csv.DictReader(open(''+D+'/boxes.csv')))
def load(split, inside_only=False):
    xs, ys = [], []
    for r in rows:
        if r['split'] != split: continue
        im = Image.open(''+D+'/' + r['path']).convert('RGB')
        w, h = im.size; s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((S, S), Image.BILINEAR)
        xs.append(np.asarray(im)); ys.append(int(r['label']))
    x = torch.tensor(np.stack(xs)).permute(0, 3, 1, 2).float().div(255)
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
    return x, torch.tensor(ys)
t0 = time.time(); xtr, ytr = load('train'); xte, yte = load('test'); print('load', time.time() - t0, flush=True)
kw = {}
if which == 'photo2': name, kw = 'photo-net', dict(stem_stride=2)
elif which == 'photo4': name = 'photo-net'
else: name = which
from minwa.models.registry import create_model
m = create_model(name, num_classes=10, in_chans=3, **kw)
opt = torch.optim.AdamW(m.parameters(), 2e-3, weight_decay=5e-4)
E = int(sys.argv[5]) if len(sys.argv) > 5 else 10; bs = 64
steps = E * (len(xtr) // bs); sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=float(os.environ.get("PCT", "0.15")))
o = (S - C)
for ep in range(E):
    m.train(); perm = torch.randperm(len(xtr)); tl = 0; t0 = time.time()
    for k in range(len(xtr) // bs):
        idx = perm[k * bs:(k + 1) * bs]; i, j = np.random.randint(0, o + 1, 2)
        xb = xtr[idx, :, i:i + C, j:j + C]
        if np.random.rand() < .5: xb = xb.flip(3)
        loss = F.cross_entropy(m(xb), ytr[idx]); opt.zero_grad(); loss.backward(); opt.step(); sched.step(); tl += loss.item()
    m.eval()
    with torch.no_grad():
        c0 = o // 2; acc = sum((m(xte[a:a + 200, :, c0:c0 + C, c0:c0 + C]).argmax(1) == yte[a:a + 200]).sum().item() for a in range(0, len(xte), 200)) / len(xte)
    print(f'{which} {S}/{C} ep{ep} loss {tl / (len(xtr) // bs):.3f} acc {acc:.3f} {time.time() - t0:.0f}s', flush=True)
