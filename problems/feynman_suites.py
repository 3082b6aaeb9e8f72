"""Published samplings of the Feynman equations, so a sweep's numbers sit beside a paper's.

eqforge's own suite (``feynman-<id>``, ``problems.feynman``) samples physically realistic
ranges in SI-scaled units. The papers sample otherwise, and the numbers differ a lot:

* ``aifeynman-<id>`` — AI Feynman (Udrescu & Tegmark 2020, the Feynman Symbolic Regression
  Database, ``FeynmanEquations.csv``): every variable, physical constants included
  (``epsilon``, ``c``, ``G``, ``kb``, ``h`` ...), uniform on the table's range, mostly [1, 5];
  the formula as the table writes it.
* ``srsd-<id>`` — SRSD (Matsubara et al. 2022, ``srsd-benchmark`` ``datasets/feynman.py``):
  constants fixed at their SI values, variables log-uniform over the listed decades in SI
  units (with a random sign where SRSD samples both signs), angles and a few others uniform,
  counts as integers; the formula as SRSD writes it (``I.26.2`` there is Snell's law for the
  index, ``n = sin(theta1)/sin(theta2)``).

Only the facts of the tables are used (formulas, variables, ranges); rows are drawn by
eqforge with its own seeded generator, so the data are a fresh sample of the published
distribution, not the published files. Neither paper has an out-of-domain split: eqforge's
``test_ood`` draws every input just beyond its range (uniform: the next half-width above;
log-uniform: the next half of the decades above), keeping only rows where the law is defined.
Descriptions reuse the eqforge suite's physical setting and variable wording where the
variable is the same, and say when a constant is an input.
"""

from __future__ import annotations

from dataclasses import dataclass

# sampling kinds: "u" uniform on [lo, hi]; "log" log-uniform on [lo, hi]; "log±" the same with a
# random sign; "int" integers in [lo, hi)
U, LOG, LOGPM, INT = "u", "log", "log±", "int"


@dataclass(frozen=True)
class PubVar:
    name: str
    lo: float
    hi: float
    kind: str = U

    @property
    def ood(self) -> tuple[float, float]:
        if self.kind in (LOG, LOGPM):
            return (self.hi, self.hi * (self.hi / self.lo) ** 0.5)
        return (self.hi, self.hi + (self.hi - self.lo) / 2)


@dataclass(frozen=True)
class PubEquation:
    id: str  # eqforge's id of the equation (the suite's own name in ``source_id``)
    output: str
    expr: str
    inputs: tuple[PubVar, ...]
    source_id: str = ""

    def cite(self) -> str:
        return self.source_id or self.id


def _v(*specs: tuple) -> tuple[PubVar, ...]:
    return tuple(PubVar(*s) for s in specs)


def _same(lo: float, hi: float, *names: str, kind: str = U) -> tuple[PubVar, ...]:
    return tuple(PubVar(n, lo, hi, kind) for n in names)


# -- AI Feynman: FeynmanEquations.csv ------------------------------------------------------

AIFEYNMAN: tuple[PubEquation, ...] = (
    PubEquation("I.6.2a", "f", "exp(-theta**2/2)/sqrt(2*pi)", _same(1, 3, "theta")),
    PubEquation("I.6.2", "f", "exp(-(theta/sigma)**2/2)/(sqrt(2*pi)*sigma)", _same(1, 3, "sigma", "theta")),
    PubEquation("I.6.2b", "f", "exp(-((theta - theta1)/sigma)**2/2)/(sqrt(2*pi)*sigma)",
                _same(1, 3, "sigma", "theta", "theta1")),
    PubEquation("I.8.14", "d", "sqrt((x2 - x1)**2 + (y2 - y1)**2)", _same(1, 5, "x1", "x2", "y1", "y2")),
    PubEquation("I.10.7", "m", "m_0/sqrt(1 - v**2/c**2)", _v(("m_0", 1, 5), ("v", 1, 2), ("c", 3, 10))),
    PubEquation("I.11.19", "A", "x1*y1 + x2*y2 + x3*y3", _same(1, 5, "x1", "x2", "x3", "y1", "y2", "y3")),
    PubEquation("I.12.1", "F", "mu*Nn", _same(1, 5, "mu", "Nn")),
    PubEquation("I.12.2", "F", "q1*q2*r/(4*pi*epsilon*r**3)", _same(1, 5, "q1", "q2", "epsilon", "r")),
    PubEquation("I.12.4", "Ef", "q1*r/(4*pi*epsilon*r**3)", _same(1, 5, "q1", "epsilon", "r")),
    PubEquation("I.12.5", "F", "q2*Ef", _same(1, 5, "q2", "Ef")),
    PubEquation("I.12.11", "F", "q*(Ef + B*v*sin(theta))", _same(1, 5, "q", "Ef", "B", "v", "theta")),
    PubEquation("I.13.4", "K", "1/2*m*(v**2 + u**2 + w**2)", _same(1, 5, "m", "v", "u", "w")),
    PubEquation("I.13.12", "U", "G*m1*m2*(1/r2 - 1/r1)", _same(1, 5, "m1", "m2", "r1", "r2", "G")),
    PubEquation("I.14.3", "U", "m*g*z", _same(1, 5, "m", "g", "z")),
    PubEquation("I.14.4", "U", "1/2*k_spring*x**2", _same(1, 5, "k_spring", "x")),
    PubEquation("I.15.3x", "x1", "(x - u*t)/sqrt(1 - u**2/c**2)",
                _v(("x", 5, 10), ("u", 1, 2), ("c", 3, 20), ("t", 1, 2))),
    PubEquation("I.16.6", "v1", "(u + v)/(1 + u*v/c**2)", _same(1, 5, "c", "v", "u")),
    PubEquation("I.18.4", "r", "(m1*r1 + m2*r2)/(m1 + m2)", _same(1, 5, "m1", "m2", "r1", "r2")),
    PubEquation("I.24.6", "E_n", "1/2*m*(omega**2 + omega_0**2)*1/2*x**2", _same(1, 3, "m", "omega", "omega_0", "x")),
    PubEquation("I.25.13", "Volt", "q/C", _same(1, 5, "q", "C")),
    PubEquation("I.26.2", "theta1", "asin(n*sin(theta2))", _v(("n", 0, 1), ("theta2", 1, 5))),
    PubEquation("I.27.6", "foc", "1/(1/d1 + n/d2)", _same(1, 5, "d1", "d2", "n")),
    PubEquation("I.29.4", "k", "omega/c", _same(1, 10, "omega", "c")),
    PubEquation("I.30.3", "Int", "Int_0*sin(n*theta/2)**2/sin(theta/2)**2", _same(1, 5, "Int_0", "theta", "n")),
    PubEquation("I.34.8", "omega", "q*v*B/p", _same(1, 5, "q", "v", "B", "p")),
    PubEquation("I.34.14", "omega", "(1 + v/c)/sqrt(1 - v**2/c**2)*omega_0",
                _v(("c", 3, 10), ("v", 1, 2), ("omega_0", 1, 5))),
    PubEquation("I.37.4", "Int", "I1 + I2 + 2*sqrt(I1*I2)*cos(delta)", _same(1, 5, "I1", "I2", "delta")),
    PubEquation("I.39.10", "E_n", "3/2*pr*V", _same(1, 5, "pr", "V"), source_id="I.39.1"),
    PubEquation("I.39.22", "pr", "n*kb*T/V", _same(1, 5, "n", "T", "V", "kb")),
    PubEquation("I.40.1", "n", "n_0*exp(-m*g*x/(kb*T))", _same(1, 5, "n_0", "m", "x", "T", "g", "kb")),
    PubEquation("I.44.4", "E_n", "n*kb*T*log(V2/V1)", _same(1, 5, "n", "kb", "T", "V1", "V2")),
    PubEquation("I.47.23", "c", "sqrt(gamma*pr/rho)", _same(1, 5, "gamma", "pr", "rho")),
    PubEquation("I.50.26", "x", "x1*(cos(omega*t) + alpha*cos(omega*t)**2)", _same(1, 3, "x1", "omega", "t", "alpha")),
    PubEquation("II.2.42", "Pwr", "kappa*(T2 - T1)*A/d", _same(1, 5, "kappa", "T1", "T2", "A", "d")),
    PubEquation("II.3.24", "flux", "Pwr/(4*pi*r**2)", _same(1, 5, "Pwr", "r")),
    PubEquation("II.11.3", "x", "q*Ef/(m*(omega_0**2 - omega**2))",
                _v(("q", 1, 3), ("Ef", 1, 3), ("m", 1, 3), ("omega_0", 3, 5), ("omega", 1, 2))),
    PubEquation("II.15.4", "E_n", "-mom*B*cos(theta)", _same(1, 5, "mom", "B", "theta")),
    PubEquation("II.27.18", "E_den", "epsilon*Ef**2", _same(1, 5, "epsilon", "Ef")),
    PubEquation("II.34.2a", "I", "q*v/(2*pi*r)", _same(1, 5, "q", "v", "r")),
    PubEquation("II.35.21", "M", "n_rho*mom*tanh(mom*B/(kb*T))", _same(1, 5, "n_rho", "mom", "B", "kb", "T")),
    PubEquation("II.38.3", "F", "Y*A*x/d", _same(1, 5, "Y", "A", "d", "x")),
    PubEquation("III.4.33", "E_n", "(h/(2*pi))*omega/(exp((h/(2*pi))*omega/(kb*T)) - 1)",
                _same(1, 5, "h", "omega", "kb", "T")),
    PubEquation("III.10.19", "E_n", "mom*sqrt(Bx**2 + By**2 + Bz**2)", _same(1, 5, "mom", "Bx", "By", "Bz")),
)

# -- SRSD: srsd-benchmark datasets/feynman.py (constants in SI units) ------------------------

C = "2.99792458e8"
EPS = "8.854e-12"
KB = "1.380649e-23"
HBAR = "(6.626e-34/(2*pi))"
TWO_PI = 6.283185307179586

SRSD: tuple[PubEquation, ...] = (
    PubEquation("I.6.2a", "f", "exp(-theta**2/2)/sqrt(2*pi)", _v(("theta", 0.1, 10, LOGPM)), "I.6.20a"),
    PubEquation("I.6.2", "f", "exp(-(theta/sigma)**2/2)/(sqrt(2*pi)*sigma)",
                _v(("theta", 0.1, 10, LOGPM), ("sigma", 0.1, 10, LOG)), "I.6.20"),
    PubEquation("I.6.2b", "f", "exp(-((theta - theta1)/sigma)**2/2)/(sqrt(2*pi)*sigma)",
                _v(("theta", 0.1, 10, LOGPM), ("theta1", 0.1, 10, LOGPM), ("sigma", 0.1, 10, LOG)), "I.6.20b"),
    PubEquation("I.8.14", "d", "sqrt((x2 - x1)**2 + (y2 - y1)**2)", _same(0.1, 10, "x2", "x1", "y2", "y1", kind=LOGPM)),
    PubEquation("I.10.7", "m", f"m_0/sqrt(1 - v**2/{C}**2)", _v(("m_0", 0.1, 10, LOG), ("v", 1e5, 1e8, LOG))),
    PubEquation("I.11.19", "A", "x1*y1 + x2*y2 + x3*y3",
                _same(0.1, 10, "x1", "y1", "x2", "y2", "x3", "y3", kind=LOGPM)),
    PubEquation("I.12.1", "F", "mu*Nn", _v(("mu", 1e-2, 1, LOG), ("Nn", 1e-2, 1, LOG))),
    PubEquation("I.12.2", "F", f"q1*q2*r/(4*pi*{EPS}*r**3)",
                _v(("q1", 0.1, 10, LOGPM), ("q2", 0.1, 10, LOGPM), ("r", 0.1, 10, LOG))),
    PubEquation("I.12.4", "Ef", f"q1*r/(4*pi*{EPS}*r**3)", _v(("q1", 0.1, 10, LOGPM), ("r", 0.1, 10, LOG))),
    PubEquation("I.12.5", "F", "q2*Ef", _v(("q2", 0.1, 10, LOGPM), ("Ef", 0.1, 10, LOGPM))),
    PubEquation("I.12.11", "F", "q*(Ef + B*v*sin(theta))",
                _v(("q", 0.1, 10, LOGPM), ("Ef", 0.1, 10, LOG), ("B", 0.1, 10, LOG), ("v", 0.1, 10, LOG),
                   ("theta", 0, TWO_PI, U))),
    PubEquation("I.13.4", "K", "1/2*m*(v**2 + u**2 + w**2)",
                _v(("m", 0.1, 10, LOG), ("v", 0.1, 10, LOGPM), ("u", 0.1, 10, LOGPM), ("w", 0.1, 10, LOGPM))),
    PubEquation("I.13.12", "U", "6.6743e-11*m1*m2*(1/r2 - 1/r1)", _same(1e-2, 1, "m1", "m2", "r2", "r1", kind=LOG)),
    PubEquation("I.14.3", "U", "9.80665*m*z", _v(("m", 1e-2, 1, LOG), ("z", 1e-2, 1, LOGPM))),
    PubEquation("I.14.4", "U", "1/2*k_spring*x**2", _v(("k_spring", 1e2, 1e4, LOG), ("x", 1e-2, 1, LOGPM))),
    PubEquation("I.15.3x", "x1", f"(x - u*t)/sqrt(1 - u**2/{C}**2)",
                _v(("x", 1, 1e2, LOGPM), ("u", 1e6, 1e8, LOGPM), ("t", 1e-6, 1e-4, LOG))),
    PubEquation("I.16.6", "v1", f"(u + v)/(1 + u*v/{C}**2)", _same(1e6, 1e8, "u", "v", kind=LOGPM)),
    PubEquation("I.18.4", "r", "(m1*r1 + m2*r2)/(m1 + m2)",
                _v(("m1", 0.1, 10, LOG), ("r1", 0.1, 10, LOGPM), ("m2", 0.1, 10, LOG), ("r2", 0.1, 10, LOGPM))),
    PubEquation("I.24.6", "E_n", "1/2*m*(omega**2 + omega_0**2)*1/2*x**2",
                _v(("m", 0.1, 10, LOG), ("omega", 0.1, 10, LOGPM), ("omega_0", 0.1, 10, LOGPM),
                   ("x", 0.1, 10, LOGPM))),
    PubEquation("I.25.13", "Volt", "q/C", _v(("q", 1e-5, 1e-3, LOGPM), ("C", 1e-5, 1e-3, LOG))),
    PubEquation("I.26.2", "n", "sin(theta1)/sin(theta2)", _same(0, TWO_PI, "theta1", "theta2")),
    PubEquation("I.27.6", "foc", "1/(1/d1 + n/d2)",
                _v(("d1", 1e-3, 1e-1, LOG), ("n", 0.1, 10, LOG), ("d2", 1e-3, 10, LOG))),
    PubEquation("I.29.4", "k", f"omega/{C}", _v(("omega", 1e9, 1e11, LOG))),
    PubEquation("I.30.3", "Int", "Int_0*sin(n*theta/2)**2/sin(theta/2)**2",
                _v(("Int_0", 10, 1e3, LOG), ("n", 10, 1e3, INT), ("theta", -TWO_PI, TWO_PI, U))),
    PubEquation("I.34.8", "omega", "q*v*B/p",
                _v(("q", 1e-11, 1e-9, LOGPM), ("v", 1e5, 1e7, LOGPM), ("B", 10, 1e3, LOGPM),
                   ("p", 1e9, 1e11, LOGPM))),
    PubEquation("I.34.14", "omega", f"(1 + v/{C})/sqrt(1 - v**2/{C}**2)*omega_0",
                _v(("v", 1e6, 1e8, LOGPM), ("omega_0", 1e9, 1e11, LOG))),
    PubEquation("I.37.4", "Int", "I1 + I2 + 2*sqrt(I1*I2)*cos(delta)",
                _v(("I1", 1e-3, 1e-1, LOG), ("I2", 1e-3, 1e-1, LOG), ("delta", 0, TWO_PI, U))),
    PubEquation("I.39.10", "E_n", "3/2*pr*V", _v(("pr", 1e4, 1e6, LOG), ("V", 1e-5, 1e-3, LOG))),
    PubEquation("I.39.22", "pr", f"n*{KB}*T/V",
                _v(("n", 1e23, 1e25, LOG), ("T", 10, 1e3, LOG), ("V", 1e-5, 1e-3, LOG))),
    PubEquation("I.40.1", "n", f"n_0*exp(-m*9.80665*x/({KB}*T))",
                _v(("n_0", 1e25, 1e27, LOG), ("m", 1e-24, 1e-22, LOG), ("x", 1e-2, 1, LOGPM), ("T", 10, 1e3, LOG))),
    PubEquation("I.44.4", "E_n", f"n*{KB}*T*log(V2/V1)",
                _v(("n", 1e24, 1e26, LOG), ("T", 10, 1e3, LOG), ("V2", 1e-5, 1e-3, LOG), ("V1", 1e-5, 1e-3, LOG))),
    PubEquation("I.47.23", "c", "sqrt(gamma*pr/rho)", _v(("gamma", 1, 2), ("pr", 5e-6, 1.5e-5), ("rho", 1, 2))),
    PubEquation("I.50.26", "x", "x1*(cos(omega*t) + alpha*cos(omega*t)**2)",
                _v(("x1", 0.1, 10, LOG), ("omega", 10, 1e3, LOGPM), ("t", 1e-3, 1e-1, LOG),
                   ("alpha", 1e-3, 1e-1, LOGPM))),
    PubEquation("II.2.42", "Pwr", "kappa*(T2 - T1)*A/d",
                _v(("kappa", 0.1, 10, LOG), ("T2", 10, 1e3, LOG), ("T1", 10, 1e3, LOG), ("A", 1e-4, 1e-2, LOG),
                   ("d", 1e-2, 1, LOG))),
    PubEquation("II.3.24", "flux", "Pwr/(4*pi*r**2)", _v(("Pwr", 1, 1e2, LOGPM), ("r", 1e-2, 1, LOG))),
    PubEquation("II.11.3", "x", "q*Ef/(m*(omega_0**2 - omega**2))",
                _v(("q", 1e-11, 1e-9, LOGPM), ("Ef", 1e-9, 1e-7, LOG), ("m", 1e-28, 1e-26, LOG),
                   ("omega_0", 1e9, 1e11, LOGPM), ("omega", 1e9, 1e11, LOGPM))),
    PubEquation("II.15.4", "E_n", "-mom*B*cos(theta)",
                _v(("mom", 1e-25, 1e-23, LOGPM), ("B", 1e-3, 1e-1, LOGPM), ("theta", 0, TWO_PI, U))),
    PubEquation("II.27.18", "E_den", f"{EPS}*Ef**2", _v(("Ef", 0.1, 10, LOG))),
    PubEquation("II.34.2a", "I", "q*v/(2*pi*r)",
                _v(("q", 1e-11, 1e-9, LOGPM), ("v", 1e5, 1e7, LOGPM), ("r", 1e-11, 1e-9, LOG))),
    PubEquation("II.35.21", "M", f"n_rho*mom*tanh(mom*B/({KB}*T))",
                _v(("n_rho", 1e23, 1e25, LOG), ("mom", 1e-25, 1e-23, LOG), ("B", 1e-3, 1e-1, LOG),
                   ("T", 10, 1e3, LOG))),
    PubEquation("II.38.3", "F", "Y*A*x/d",
                _v(("Y", 0.1, 10, LOG), ("A", 1e-4, 1e-2, LOG), ("x", 1e-3, 1e-1, LOGPM), ("d", 1e-2, 1, LOG))),
    PubEquation("III.4.33", "E_n", f"{HBAR}*omega/(exp({HBAR}*omega/({KB}*T)) - 1)",
                _v(("omega", 1e8, 1e10, LOG), ("T", 10, 1e3, LOG))),
    PubEquation("III.10.19", "E_n", "mom*sqrt(Bx**2 + By**2 + Bz**2)",
                _v(("mom", 1e-25, 1e-23, LOGPM), ("Bx", 1e-3, 1e-1, LOGPM), ("By", 1e-3, 1e-1, LOGPM),
                   ("Bz", 1e-3, 1e-1, LOGPM))),
)

SUITES: dict[str, tuple[PubEquation, ...]] = {"aifeynman": AIFEYNMAN, "srsd": SRSD}
SUITE_TITLES = {"aifeynman": "AI Feynman (Udrescu & Tegmark 2020) sampling",
                "srsd": "SRSD (Matsubara et al. 2022) sampling"}

#: what a variable is, where its name says more than the eqforge suite's wording
DESCRIPTIONS: dict[str, str] = {
    "epsilon": "the vacuum permittivity (given as an input)",
    "c": "the speed of light (given as an input)",
    "G": "the gravitational constant (given as an input)",
    "g": "the gravitational acceleration (given as an input)",
    "kb": "the Boltzmann constant (given as an input)",
    "h": "the Planck constant (given as an input)",
    "mom": "the magnetic moment",
    "n_rho": "the number density of magnetic moments",
    "gamma": "the adiabatic index (ratio of specific heats)",
    "C": "the capacitance",
    "m_0": "the rest mass",
    "omega_0": "the natural (or emitted) angular frequency",
    "Int_0": "the intensity from a single slit",
    "n_0": "the number density at ground level",
}
_VECTORS = {"x1": "the x component of the force", "x2": "the y component of the force",
            "x3": "the z component of the force", "y1": "the x component of the displacement",
            "y2": "the y component of the displacement", "y3": "the z component of the displacement"}
#: per (suite, equation), for variables whose meaning differs from the eqforge suite's
OVERRIDES: dict[tuple[str, str], dict[str, str]] = {
    ("aifeynman", "I.11.19"): _VECTORS,
    ("srsd", "I.11.19"): _VECTORS,
    ("aifeynman", "I.39.22"): {"n": "the number of gas molecules"},
    ("srsd", "I.39.22"): {"n": "the number of gas molecules"},
    ("aifeynman", "I.44.4"): {"n": "the number of gas molecules"},
    ("srsd", "I.44.4"): {"n": "the number of gas molecules"},
    ("srsd", "I.26.2"): {"theta1": "the angle of incidence", "theta2": "the angle of refraction",
                         "n": "the relative refractive index"},
}
