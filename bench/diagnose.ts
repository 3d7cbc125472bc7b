import type { BenchServer } from "./support.ts";

export interface DiagnosisVariant {
  label: string;
  tpsCpu: number;
  tps8: number;
}

export interface DiagnosisResult {
  backlog: number;
  seconds: number;
  repeats: number;
  update8: number | undefined;
  variants: DiagnosisVariant[];
  functions: { name: string; totalUs: number; selfUs: number }[];
}

export async function measureDiagnosis(
  _bench: BenchServer,
  repeats: number,
  update8: number | undefined,
): Promise<DiagnosisResult> {
  return { backlog: 0, seconds: 0, repeats, update8, variants: [], functions: [] };
}
