//! Precision, recall and F-beta from counts.

/// True positives, false positives, false negatives.
#[derive(Clone, Copy, Debug, Default)]
pub struct Prf {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

impl Prf {
    /// Precision (0 when nothing was predicted).
    pub fn p(&self) -> f64 {
        if self.tp + self.fp > 0.0 {
            self.tp / (self.tp + self.fp)
        } else {
            0.0
        }
    }
    /// Recall (0 when there is nothing to find).
    pub fn r(&self) -> f64 {
        if self.tp + self.fn_ > 0.0 {
            self.tp / (self.tp + self.fn_)
        } else {
            0.0
        }
    }
    /// F-beta (beta 1 = F1; beta 2 weighs recall twice).
    pub fn f(&self, beta: f64) -> f64 {
        let (p, r, b2) = (self.p(), self.r(), beta * beta);
        if p + r > 0.0 {
            (1.0 + b2) * p * r / (b2 * p + r)
        } else {
            0.0
        }
    }
    /// Positives in the data.
    pub fn support(&self) -> f64 {
        self.tp + self.fn_
    }
    /// Adds counts.
    pub fn add(&mut self, o: &Prf) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}
